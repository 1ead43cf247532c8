package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/controlplane/store"
)

func testCRUD(t *testing.T, h *harness) {
	ctx := testContext(t)
	s := h.store(t)
	key := h.key("crud")

	if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a missing key: err = %v, want ErrNotFound", err)
	}
	rev1, err := s.Put(ctx, key, []byte("v1"), store.MustNotExist)
	if err != nil || rev1 <= 0 {
		t.Fatalf("Put(MustNotExist) = %d, %v; want a positive revision", rev1, err)
	}
	assertKV(t, s, key, "v1", rev1)

	rev2, err := s.Put(ctx, key, []byte("v2"), rev1)
	if err != nil || rev2 <= rev1 {
		t.Fatalf("Put(expect %d) = %d, %v; want a revision above %d", rev1, rev2, err, rev1)
	}
	assertKV(t, s, key, "v2", rev2)

	kvs, _, err := s.List(ctx, h.ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 1 || kvs[0].Key != key || string(kvs[0].Value) != "v2" || kvs[0].ModRevision != rev2 {
		t.Fatalf("List(%q) = %+v; want the one key %q=v2 at %d", h.ns, kvs, key, rev2)
	}

	if err := s.Delete(ctx, key, rev2); err != nil {
		t.Fatalf("Delete(expect %d): %v", rev2, err)
	}
	if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, key, store.Any); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete(Any) of a missing key: err = %v, want ErrNotFound", err)
	}

	// Values are opaque bytes, all 256 of them, and may be empty.
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	binKey := h.key("binary")
	if _, err := s.Put(ctx, binKey, binary, store.Any); err != nil {
		t.Fatalf("Put(Any) of a new key: %v", err)
	}
	got, err := s.Get(ctx, binKey)
	if err != nil || !bytes.Equal(got.Value, binary) {
		t.Fatalf("Get(%q) = %x, %v; want the 256 byte values back", binKey, got.Value, err)
	}
	emptyKey := h.key("empty")
	if _, err := s.Put(ctx, emptyKey, nil, store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, emptyKey); err != nil || len(got.Value) != 0 {
		t.Fatalf("Get of an empty value = %q, %v; want an empty value", got.Value, err)
	}
}

func testPutConflicts(t *testing.T, h *harness) {
	ctx := testContext(t)
	s := h.store(t)

	t.Run("MustNotExistOnExistingKey", func(t *testing.T) {
		key := h.key("exists")
		rev, err := s.Put(ctx, key, []byte("first"), store.MustNotExist)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, key, []byte("second"), store.MustNotExist); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second Put(MustNotExist): err = %v, want ErrConflict", err)
		}
		assertKV(t, s, key, "first", rev)
	})
	t.Run("StaleRevisionDoesNotOverwrite", func(t *testing.T) {
		key := h.key("stale")
		staleRev, err := s.Put(ctx, key, []byte("read by A"), store.Any)
		if err != nil {
			t.Fatal(err)
		}
		newRev, err := s.Put(ctx, key, []byte("written by B"), staleRev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, key, []byte("written by A"), staleRev); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Put with stale revision %d: err = %v, want ErrConflict", staleRev, err)
		}
		assertKV(t, s, key, "written by B", newRev)
	})
	t.Run("RevisionOfMissingKey", func(t *testing.T) {
		key := h.key("missing")
		if _, err := s.Put(ctx, key, []byte("x"), 1); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Put(expect 1) of a missing key: err = %v, want ErrConflict", err)
		}
		if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the refused Put created the key: Get err = %v", err)
		}
	})
	t.Run("AnyOverwrites", func(t *testing.T) {
		key := h.key("any")
		if _, err := s.Put(ctx, key, []byte("old"), store.Any); err != nil {
			t.Fatal(err)
		}
		rev, err := s.Put(ctx, key, []byte("new"), store.Any)
		if err != nil {
			t.Fatalf("Put(Any) over an existing key: %v", err)
		}
		assertKV(t, s, key, "new", rev)
	})
	t.Run("InvalidExpect", func(t *testing.T) {
		key := h.key("invalid")
		if _, err := s.Put(ctx, key, []byte("x"), -7); err == nil {
			t.Fatal("Put(expect -7) succeeded; want an error")
		}
		if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the refused Put created the key: Get err = %v", err)
		}
	})
}

func testDeleteConflicts(t *testing.T, h *harness) {
	ctx := testContext(t)
	s := h.store(t)
	key := h.key("del")

	staleRev, err := s.Put(ctx, key, []byte("v1"), store.MustNotExist)
	if err != nil {
		t.Fatal(err)
	}
	currentRev, err := s.Put(ctx, key, []byte("v2"), staleRev)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, key, staleRev); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Delete with stale revision: err = %v, want ErrConflict", err)
	}
	assertKV(t, s, key, "v2", currentRev)

	if err := s.Delete(ctx, key, currentRev); err != nil {
		t.Fatalf("Delete with current revision: %v", err)
	}
	if err := s.Delete(ctx, key, currentRev); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete(expect %d) of a deleted key: err = %v, want ErrNotFound", currentRev, err)
	}
	if err := s.Delete(ctx, h.key("never"), store.Any); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete(Any) of a missing key: err = %v, want ErrNotFound", err)
	}
}

func testListOrderAndRevision(t *testing.T, h *harness) {
	ctx := testContext(t)
	s := h.store(t)

	// Written out of order; "a" is a key of its own beside the "a/" keys, and a
	// sibling namespace shares the string prefix without the separator.
	names := []string{"b", "a/2", "a/10", "c", "a/1", "a"}
	maxRev := int64(0)
	for _, n := range names {
		rev, err := s.Put(ctx, h.key(n), []byte("value of "+n), store.MustNotExist)
		if err != nil {
			t.Fatal(err)
		}
		maxRev = max(maxRev, rev)
	}
	outside := h.ns[:len(h.ns)-1] + "x/b"
	if _, err := s.Put(ctx, outside, []byte("outside"), store.Any); err != nil {
		t.Fatal(err)
	}

	kvs, rev, err := s.List(ctx, h.ns)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(names)
	for i, n := range want {
		want[i] = h.key(n)
	}
	slices.Sort(want)
	if got := keysOf(kvs); !slices.Equal(got, want) {
		t.Fatalf("List(%q) keys = %q; want %q (sorted, nothing outside the prefix)", h.ns, got, want)
	}
	for _, kv := range kvs {
		if name := kv.Key[len(h.ns):]; string(kv.Value) != "value of "+name {
			t.Errorf("List: %q has value %q", kv.Key, kv.Value)
		}
		if kv.ModRevision <= 0 || kv.ModRevision > rev {
			t.Errorf("List: %q has revision %d, not in (0, %d] (the listing's revision)", kv.Key, kv.ModRevision, rev)
		}
	}
	if rev < maxRev {
		t.Fatalf("List revision %d is below the last write's %d", rev, maxRev)
	}

	sub, _, err := s.List(ctx, h.key("a/"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(sub), []string{h.key("a/1"), h.key("a/10"), h.key("a/2")}; !slices.Equal(got, want) {
		t.Fatalf("List(%q) = %q; want %q", h.key("a/"), got, want)
	}

	empty, emptyRev, err := s.List(ctx, h.key("nothing-here/"))
	if err != nil || len(empty) != 0 || emptyRev < rev {
		t.Fatalf("List of an empty prefix = %v, %d, %v; want nothing at a revision >= %d", empty, emptyRev, err, rev)
	}

	later, err := s.Put(ctx, h.key("b"), []byte("later"), store.Any)
	if err != nil {
		t.Fatal(err)
	}
	if later <= rev {
		t.Fatalf("a write after List got revision %d, not above the listing's %d", later, rev)
	}
}

// testConcurrentReadModifyWrite increments one counter from goroutines on two
// Stores with Get, then Put conditional on the revision read, retrying on
// ErrConflict. A lost update would leave the counter below the number of Puts
// that reported success.
func testConcurrentReadModifyWrite(t *testing.T, h *harness) {
	ctx := testContext(t)
	stores := []store.Store{h.store(t), h.store(t)}
	key := h.key("counter")
	if _, err := stores[0].Put(ctx, key, []byte("0"), store.MustNotExist); err != nil {
		t.Fatal(err)
	}

	const (
		workers        = 6
		increments     = 8
		maxAttemptsPer = 200
	)
	var (
		succeeded, conflicts atomic.Int64
		wg                   sync.WaitGroup
		errs                 = make(chan error, workers)
	)
	for w := range workers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for range increments {
				if err := increment(ctx, s, key, maxAttemptsPer, &conflicts); err != nil {
					errs <- err
					return
				}
				succeeded.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	kv, err := stores[1].Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	final, err := strconv.ParseInt(string(kv.Value), 10, 64)
	if err != nil {
		t.Fatalf("counter holds %q: %v", kv.Value, err)
	}
	if final != succeeded.Load() {
		t.Fatalf("counter = %d after %d successful conditional writes (%d conflicts): updates were lost", final, succeeded.Load(), conflicts.Load())
	}
	if final != workers*increments {
		t.Fatalf("counter = %d; want %d", final, workers*increments)
	}
	t.Logf("%d increments, %d conflicts retried", final, conflicts.Load())
}

func keysOf(kvs []store.KV) []string {
	keys := make([]string, len(kvs))
	for i, kv := range kvs {
		keys[i] = kv.Key
	}
	return keys
}

func assertKV(t *testing.T, s store.Store, key, value string, rev int64) {
	t.Helper()
	kv, err := s.Get(testContext(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if kv.Key != key || string(kv.Value) != value || kv.ModRevision != rev {
		t.Fatalf("Get(%q) = {%q %q %d}; want {%q %q %d}", key, kv.Key, kv.Value, kv.ModRevision, key, value, rev)
	}
}

// increment adds one to the counter at key, retrying on ErrConflict.
func increment(ctx context.Context, s store.Store, key string, maxAttempts int, conflicts *atomic.Int64) error {
	for range maxAttempts {
		kv, err := s.Get(ctx, key)
		if err != nil {
			return err
		}
		n, err := strconv.ParseInt(string(kv.Value), 10, 64)
		if err != nil {
			return fmt.Errorf("counter holds %q: %w", kv.Value, err)
		}
		_, err = s.Put(ctx, key, []byte(strconv.FormatInt(n+1, 10)), kv.ModRevision)
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		conflicts.Add(1)
	}
	return fmt.Errorf("no increment of %q after %d attempts", key, maxAttempts)
}
