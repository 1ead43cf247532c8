package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestListReadsInPages lists more keys than fit in one page: all come back, in
// order, with the first page's revision, and keys outside the prefix stay out.
func TestListReadsInPages(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	s, err := OpenEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.listPageSize = 2

	var want []string
	for i := range 7 {
		key := fmt.Sprintf("paged/%02d", 6-i) // written in reverse order
		if _, err := s.Put(ctx, key, []byte(key), MustNotExist); err != nil {
			t.Fatal(err)
		}
		want = append(want, key)
	}
	if _, err := s.Put(ctx, "paged0", []byte("outside"), MustNotExist); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)

	kvs, rev, err := s.List(ctx, "paged/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range kvs {
		got = append(got, kv.Key)
		if string(kv.Value) != kv.Key || kv.ModRevision > rev {
			t.Errorf("%s = %q at %d (listing at %d)", kv.Key, kv.Value, kv.ModRevision, rev)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List in pages of 2 = %q; want %q", got, want)
	}
}

// TestZapRecordsReachSlog: etcd's zap records arrive at the slog handler with
// their fields, tagged component=etcd, and below the threshold nothing arrives.
func TestZapRecordsReachSlog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	zl := newZapLogger(logger, zapcore.WarnLevel).Named("raft").With(zap.String("member", "m0"))

	zl.Info("chatty detail", zap.Int("n", 1))
	zl.Warn("peer unreachable", zap.String("peer", "m1"), zap.Error(errors.New("connection refused")), zap.Duration("after", 2*time.Second))
	zl.Error("apply took too long", zap.Int64("index", 42))

	var records []map[string]any
	for line := range bytes.Lines(buf.Bytes()) {
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("bad JSON %q: %v", line, err)
		}
		records = append(records, r)
	}
	if len(records) != 2 {
		t.Fatalf("got %d records, want 2 (the info one dropped): %s", len(records), buf.Bytes())
	}
	warn, errRec := records[0], records[1]
	for k, v := range map[string]any{
		"level": "WARN", "msg": "peer unreachable", "component": "etcd", "logger": "raft",
		"member": "m0", "peer": "m1", "error": "connection refused",
	} {
		if warn[k] != v {
			t.Errorf("warn record %s = %v; want %v (record %v)", k, warn[k], v, warn)
		}
	}
	if _, ok := warn["after"]; !ok {
		t.Errorf("warn record lost the duration field: %v", warn)
	}
	if errRec["level"] != "ERROR" || errRec["index"] != float64(42) || errRec["member"] != "m0" {
		t.Errorf("error record = %v", errRec)
	}

	// A nil logger discards; a logger whose handler is above Warn is not called.
	newZapLogger(nil, zapcore.WarnLevel).Error("dropped")
	quiet := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))
	buf.Reset()
	newZapLogger(quiet, zapcore.WarnLevel).Warn("below the handler's level")
	if buf.Len() != 0 {
		t.Fatalf("a warning reached an error-level handler: %s", buf.Bytes())
	}
}

// TestSessionLossEndsLocksAndLeadership revokes a store's session lease behind its
// back, as etcd does when a partition outlasts the TTL: the leadership's Lost
// closes, the lock passes to the next caller in the process, and both Lock and
// Campaign work again on a new session.
func TestSessionLossEndsLocksAndLeadership(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	s, err := OpenEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	leadership, err := s.Campaign(ctx, "election", "me")
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock(ctx, "lock")
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		unlockNext, err := s.Lock(ctx, "lock")
		if err == nil {
			err = unlockNext()
		}
		waiting <- err
	}()
	select {
	case err := <-waiting:
		t.Fatalf("a second caller in the process took the held lock (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}

	old, err := s.sessions.live()
	if err != nil || old == nil {
		t.Fatalf("no live session: %v", err)
	}
	if _, err := s.client.Revoke(ctx, old.Lease()); err != nil {
		t.Fatal(err)
	}

	select {
	case <-leadership.Lost():
	case <-ctx.Done():
		t.Fatal("Lost not closed after the session's lease was revoked")
	}
	select {
	case err := <-waiting:
		if err != nil {
			t.Fatalf("the waiting caller's Lock after the holder's session ended: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the lock stayed held in-process after its session ended")
	}
	if err := unlock(); err != nil {
		t.Fatalf("unlock of a lock lost with its session = %v; want nil", err)
	}
	again, err := s.Campaign(ctx, "election", "me")
	if err != nil {
		t.Fatalf("Campaign on a new session: %v", err)
	}
	if cur, _ := s.sessions.live(); cur == nil || cur.Lease() == old.Lease() {
		t.Fatal("the store did not make a new session")
	}
	if err := again.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}
