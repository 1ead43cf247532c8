package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controlplane/store"
)

// eventRecord is an Event flattened for comparison; rev 0 means "any revision"
// (Delete does not return the revision it happened at).
type eventRecord struct {
	typ   store.EventType
	key   string
	value string
	rev   int64
}

func (e eventRecord) String() string {
	op := "put"
	if e.typ == store.EventDelete {
		op = "delete"
	}
	return fmt.Sprintf("%s %s=%q @%d", op, e.key, e.value, e.rev)
}

// testWatchFromListRevision lists, writes once before the watch starts, then
// writes, deletes and writes outside the prefix while watching. Every change under
// the prefix after the listing must arrive once, in order; a sentinel write ends
// the collection, so a duplicate or stray event before it is seen too.
func testWatchFromListRevision(t *testing.T, h *harness) {
	ctx := testContext(t)
	s := h.store(t)
	prefix := h.key("w/")
	k := func(n string) string { return prefix + n }

	if _, err := s.Put(ctx, k("a"), []byte("a1"), store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	listed, rev, err := s.List(ctx, prefix)
	if err != nil || len(listed) != 1 {
		t.Fatalf("List = %v, %v; want the one seeded key", listed, err)
	}

	var want []eventRecord
	put := func(key, value string) {
		t.Helper()
		r, err := s.Put(ctx, key, []byte(value), store.Any)
		if err != nil {
			t.Fatal(err)
		}
		if len(key) > len(prefix) && key[:len(prefix)] == prefix {
			want = append(want, eventRecord{store.EventPut, key, value, r})
		}
	}
	// Written after the listing but before Watch is called: still "after rev".
	put(k("b"), "b1")

	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := s.Watch(watchCtx, prefix, rev)

	put(k("a"), "a2")
	if err := s.Delete(ctx, k("b"), store.Any); err != nil {
		t.Fatal(err)
	}
	want = append(want, eventRecord{store.EventDelete, k("b"), "", 0})
	put(h.key("w-outside"), "not watched") // shares the string prefix, not the "/"
	put(k("c"), "c1")
	sentinel := k("zz-sentinel")
	sentinelRev, err := s.Put(ctx, sentinel, []byte("end"), store.Any)
	if err != nil {
		t.Fatal(err)
	}

	var got []eventRecord
	lastRev := rev
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for done := false; !done; {
		select {
		case resp, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed early after %v", got)
			}
			if resp.Err != nil {
				t.Fatalf("watch failed after %v: %v", got, resp.Err)
			}
			if resp.Revision <= lastRev {
				t.Fatalf("watch response at revision %d after one at %d: not in order", resp.Revision, lastRev)
			}
			lastRev = resp.Revision
			for _, ev := range resp.Events {
				if ev.KV.ModRevision != resp.Revision {
					t.Errorf("event %s has revision %d inside a response at %d", ev.KV.Key, ev.KV.ModRevision, resp.Revision)
				}
				if ev.KV.Key == sentinel {
					if ev.KV.ModRevision != sentinelRev {
						t.Fatalf("sentinel at revision %d, written at %d", ev.KV.ModRevision, sentinelRev)
					}
					done = true
					continue
				}
				got = append(got, eventRecord{ev.Type, ev.KV.Key, string(ev.KV.Value), ev.KV.ModRevision})
			}
		case <-deadline.C:
			t.Fatalf("watch delivered %v and no sentinel within 20s; want %v", got, want)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("watch delivered %v; want exactly %v", got, want)
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.rev == 0 {
			w.rev = g.rev
		}
		if g != w {
			t.Fatalf("event %d = %v; want %v (all: %v)", i, g, w, got)
		}
	}
}

// testWatchEndsOnCancel: cancelling the watch's ctx closes its channel.
func testWatchEndsOnCancel(t *testing.T, h *harness) {
	ctx := testContext(t)
	s := h.store(t)
	_, rev, err := s.List(ctx, h.ns)
	if err != nil {
		t.Fatal(err)
	}
	watchCtx, cancel := context.WithCancel(ctx)
	ch := s.Watch(watchCtx, h.ns, rev)
	if _, err := s.Put(ctx, h.key("x"), []byte("1"), store.Any); err != nil {
		t.Fatal(err)
	}
	first := within(t, ch, 20*time.Second, "the watch's first event")
	if first.Err != nil || len(first.Events) != 1 || first.Events[0].KV.Key != h.key("x") {
		t.Fatalf("first response = %+v; want the put of %q", first, h.key("x"))
	}
	cancel()
	waitClosed(t, ch, 10*time.Second)
}

// testWatchEndsWithErrorOnClose: closing the Store ends its watches with an error,
// so a watcher knows to list again instead of waiting forever.
func testWatchEndsWithErrorOnClose(t *testing.T, h *harness) {
	ctx := testContext(t)
	s := h.store(t)
	_, rev, err := s.List(ctx, h.ns)
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, h.ns, rev)
	if _, err := s.Put(ctx, h.key("x"), []byte("1"), store.Any); err != nil {
		t.Fatal(err)
	}
	if first := within(t, ch, 20*time.Second, "the watch's first event"); first.Err != nil {
		t.Fatalf("first response is an error: %v", first.Err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	sawErr := false
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				if !sawErr {
					t.Fatal("watch closed without an error after Close")
				}
				return
			}
			if resp.Err != nil {
				sawErr = true
			}
		case <-deadline.C:
			t.Fatal("watch still open 10s after Close")
		}
	}
}

// testPutWithTTL: a key written with a TTL disappears on its own, not at once; a
// key without one stays.
func testPutWithTTL(t *testing.T, h *harness) {
	ctx := testContext(t)
	s := h.store(t)
	const ttl = time.Second

	if _, err := s.PutWithTTL(ctx, h.key("zero"), []byte("x"), 0); err == nil {
		t.Fatal("PutWithTTL with ttl 0 succeeded; want an error")
	}
	plain := h.key("plain")
	if _, err := s.Put(ctx, plain, []byte("stays"), store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	key := h.key("ephemeral")
	written := time.Now()
	rev, err := s.PutWithTTL(ctx, key, []byte("heartbeat"), ttl)
	if err != nil {
		t.Fatal(err)
	}
	assertKV(t, s, key, "heartbeat", rev)

	// etcd rounds TTLs up to its minimum lease (about 2 s) and expires leases in
	// passes, so allow generously, polling rather than sleeping a fixed time.
	const limit = 20 * time.Second
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for {
		_, err := s.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(written) > limit {
			t.Fatalf("key with a %v TTL still present after %v", ttl, limit)
		}
		<-poll.C
	}
	if gone := time.Since(written); gone < ttl/2 {
		t.Fatalf("key with a %v TTL gone after only %v", ttl, gone)
	}
	if _, err := s.Get(ctx, plain); err != nil {
		t.Fatalf("the key without TTL is gone too: %v", err)
	}
}

func waitClosed(t *testing.T, ch <-chan store.WatchResponse, d time.Duration) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	drained := 0
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
			drained++
		case <-deadline.C:
			t.Fatalf("watch channel still open %v after cancel (drained %d responses)", d, drained)
		}
	}
}
