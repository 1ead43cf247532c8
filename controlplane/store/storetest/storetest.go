// Package storetest is the conformance suite every store.Store implementation
// passes: reads and conditional writes, listings at one revision, watches that miss
// and repeat nothing, TTLs, locks and elections between two processes, and
// read-modify-write under contention without lost updates.
//
// It is for tests only. It does not start a backend: the caller's open function
// does, and the suite only uses what the Store interface offers.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controlplane/store"
)

// Run runs the suite. open must return a new, independent Store at every call,
// all sharing one backend, as separate processes would (two Stores take the same
// lock, one sees the other's writes). The suite closes what it opens and may close
// a Store early, so Close must be safe to call twice. Subtests run concurrently
// (open must be safe for that) and keep to their own keys, lock and election names (random per run), so the
// backend may be shared with other tests and hold other data.
//
// Run returns only when every subtest has finished, so the caller may stop the
// backend right after it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"CRUD", testCRUD},
		{"PutConflicts", testPutConflicts},
		{"DeleteConflicts", testDeleteConflicts},
		{"ListOrderAndRevision", testListOrderAndRevision},
		{"WatchFromListRevision", testWatchFromListRevision},
		{"WatchEndsOnCancel", testWatchEndsOnCancel},
		{"WatchEndsWithErrorOnClose", testWatchEndsWithErrorOnClose},
		{"PutWithTTL", testPutWithTTL},
		{"LockMutualExclusion", testLockMutualExclusion},
		{"LockProtectsReadModifyWrite", testLockProtectsReadModifyWrite},
		{"LockReleasedOnClose", testLockReleasedOnClose},
		{"CampaignOneLeader", testCampaignOneLeader},
		{"ConcurrentReadModifyWrite", testConcurrentReadModifyWrite},
	}
	// Subtests run concurrently, each in its own goroutine, rather than through
	// t.Parallel: most of their time is spent waiting on the backend (a TTL to
	// expire, a lock to stay blocked), and t.Parallel would queue them behind
	// -parallel (GOMAXPROCS by default) with every other test of the package.
	// Run returns when all have finished, so the caller's deferred clean-up
	// (stopping the backend) comes after them.
	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Go(func() {
			t.Run(tc.name, func(t *testing.T) {
				tc.run(t, &harness{open: open, ns: namespace(t)})
			})
		})
	}
	wg.Wait()
}

// testTimeout bounds every subtest's operations.
const testTimeout = 45 * time.Second

type harness struct {
	open func(t *testing.T) store.Store
	ns   string // key prefix, lock and election name prefix of this subtest
}

// store opens a Store that is closed when the test ends.
func (h *harness) store(t *testing.T) store.Store {
	t.Helper()
	s := h.open(t)
	if s == nil {
		t.Fatal("open returned a nil Store")
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (h *harness) key(name string) string { return h.ns + name }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// namespace is unique per subtest and per run, so reruns against a persistent
// backend start from nothing.
func namespace(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return "storetest/" + name + "-" + hex.EncodeToString(b[:]) + "/"
}

// within waits for ch to yield a value, failing the test after d.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("%s: nothing after %v", what, d)
		var zero T
		return zero
	}
}

// notWithin checks that ch yields nothing for d: the window a blocked Lock or
// Campaign is given to (wrongly) succeed.
func notWithin[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
		t.Fatalf("%s happened, but must not have", what)
	case <-timer.C:
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
