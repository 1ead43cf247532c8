package acmetest

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
	"testing"
)

// LogSink returns the test's log sink: a writer that keeps what is written and
// prints it to the test log when the test fails. Background goroutines (Pebble's
// validations, certmagic's jobs) may outlive the test; writes that come after
// the end go nowhere rather than to a finished test. One sink per test.
func LogSink(t testing.TB) io.Writer {
	t.Helper()
	sinksMu.Lock()
	defer sinksMu.Unlock()
	if s := sinks[t]; s != nil {
		return s
	}
	s := &sink{}
	sinks[t] = s
	t.Cleanup(func() {
		s.mu.Lock()
		s.done = true
		out := s.buf.String()
		s.mu.Unlock()
		if t.Failed() && out != "" {
			t.Logf("log of the test:\n%s", out)
		}
		sinksMu.Lock()
		delete(sinks, t)
		sinksMu.Unlock()
	})
	return s
}

// Logger is a debug-level slog.Logger writing to LogSink(t).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(LogSink(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var (
	sinksMu sync.Mutex
	sinks   = map[testing.TB]*sink{}
)

type sink struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done bool
}

// maxLog bounds what a sink keeps; the end of a long log is cut.
const maxLog = 4 << 20

func (s *sink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done && s.buf.Len() < maxLog {
		s.buf.Write(b)
	}
	return len(b), nil
}
