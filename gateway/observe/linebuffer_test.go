package observe

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingWriter keeps every Write call separately.
type recordingWriter struct {
	mu     sync.Mutex
	writes []string
	fail   error
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	return len(p), w.fail
}

func (w *recordingWriter) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

func TestLineBufferBatchesWholeLines(t *testing.T) {
	w := &recordingWriter{}
	b := NewLineBuffer(w, 64, time.Hour)
	lines := []string{"aaaaaaaaaaaaaaaaaaaa\n", "bbbbbbbbbbbbbbbbbbbb\n", "cccccccccccccccccccc\n", "dddddddddddddddddddd\n"}
	for _, l := range lines {
		b.Write([]byte(l))
	}
	// 4 x 21 bytes into 64: the fourth did not fit, so the first three went out in
	// one write, and the fourth waits.
	got := w.all()
	if len(got) != 1 || got[0] != lines[0]+lines[1]+lines[2] {
		t.Fatalf("writes before Close: %q, want the first three lines in one write", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	got = w.all()
	if len(got) != 2 || got[1] != lines[3] {
		t.Fatalf("writes after Close: %q, want the fourth line flushed", got)
	}
	for _, wr := range got {
		if !strings.HasSuffix(wr, "\n") {
			t.Errorf("a write ended mid-line: %q", wr)
		}
	}
}

func TestLineBufferLargeLineWrittenThrough(t *testing.T) {
	w := &recordingWriter{}
	b := NewLineBuffer(w, 16, time.Hour)
	defer b.Close()
	b.Write([]byte("short\n"))
	big := strings.Repeat("x", 40) + "\n"
	b.Write([]byte(big))
	if got := w.all(); len(got) != 2 || got[0] != "short\n" || got[1] != big {
		t.Fatalf("writes: %q, want the buffered line then the big one, in order", got)
	}
}

func TestLineBufferFlushesOnInterval(t *testing.T) {
	w := &recordingWriter{}
	b := NewLineBuffer(w, 1<<10, 10*time.Millisecond)
	defer b.Close()
	b.Write([]byte("line\n"))
	deadline := time.Now().Add(5 * time.Second)
	for len(w.all()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a buffered line was not written within the flush interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := w.all(); got[0] != "line\n" {
		t.Errorf("flushed %q", got)
	}
}

func TestLineBufferReportsWriteErrors(t *testing.T) {
	w := &recordingWriter{fail: errors.New("disk full")}
	b := NewLineBuffer(w, 8, time.Hour)
	defer b.Close()
	b.Write([]byte("1234567\n"))
	if _, err := b.Write([]byte("more\n")); err == nil || err.Error() != "disk full" {
		t.Errorf("write after a failed flush: err %v, want disk full", err)
	}
}

func TestLineBufferConcurrentLinesStayWhole(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	b := NewLineBuffer(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	}), 100, time.Millisecond)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			line := strings.Repeat(string(rune('a'+g)), 30) + "\n"
			for range 200 {
				b.Write([]byte(line))
			}
		})
	}
	wg.Wait()
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	for _, l := range lines {
		if len(l) != 30 || strings.Count(l, l[:1]) != 30 {
			t.Fatalf("a line was torn: %q", l)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
