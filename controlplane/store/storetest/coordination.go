package storetest

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controlplane/store"
)

// blockedWindow is how long a Lock or Campaign that must block is given to
// (wrongly) return.
const blockedWindow = 300 * time.Millisecond

type lockResult struct {
	unlock func() error
	err    error
}

func lockAsync(ctx context.Context, s store.Store, name string) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		unlock, err := s.Lock(ctx, name)
		ch <- lockResult{unlock, err}
	}()
	return ch
}

type campaignResult struct {
	leadership store.Leadership
	err        error
}

func campaignAsync(ctx context.Context, s store.Store, name, candidate string) <-chan campaignResult {
	ch := make(chan campaignResult, 1)
	go func() {
		l, err := s.Campaign(ctx, name, candidate)
		ch <- campaignResult{l, err}
	}()
	return ch
}

// testLockMutualExclusion: while A holds a lock, B's Lock blocks (and gives up with
// an error when its ctx ends); A's unlock lets B in.
func testLockMutualExclusion(t *testing.T, h *harness) {
	ctx := testContext(t)
	a, b := h.store(t), h.store(t)
	name := h.key("lock")

	unlockA, err := a.Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, blockedWindow)
	unlock, err := b.Lock(short, name)
	cancel()
	if err == nil {
		_ = unlock()
		t.Fatal("B took the lock A holds")
	}

	waiting := lockAsync(ctx, b, name)
	notWithin(t, waiting, blockedWindow, "B taking the lock A holds")
	if err := unlockA(); err != nil {
		t.Fatalf("A's unlock: %v", err)
	}
	got := within(t, waiting, 15*time.Second, "B taking the lock after A's unlock")
	if got.err != nil {
		t.Fatalf("B's Lock: %v", got.err)
	}
	if err := got.unlock(); err != nil {
		t.Fatalf("B's unlock: %v", err)
	}
	// The timed-out attempt must not have left anything that blocks A now.
	again, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	unlockA, err = a.Lock(again, name)
	if err != nil {
		t.Fatalf("A re-taking the free lock: %v", err)
	}
	if err := unlockA(); err != nil {
		t.Fatal(err)
	}
}

// testLockProtectsReadModifyWrite: goroutines on two Stores (two on each) do an
// unconditional read-modify-write under the lock; the lock alone must keep every
// increment.
func testLockProtectsReadModifyWrite(t *testing.T, h *harness) {
	ctx := testContext(t)
	stores := []store.Store{h.store(t), h.store(t)}
	name := h.key("rmw-lock")
	key := h.key("rmw")
	if _, err := stores[0].Put(ctx, key, []byte("0"), store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for range rounds {
				if err := lockedIncrement(ctx, s, name, key); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	kv, err := stores[1].Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(kv.Value) != strconv.Itoa(workers*rounds) {
		t.Fatalf("counter = %s after %d locked increments: two holders overlapped", kv.Value, workers*rounds)
	}
}

func lockedIncrement(ctx context.Context, s store.Store, name, key string) error {
	unlock, err := s.Lock(ctx, name)
	if err != nil {
		return err
	}
	kv, err := s.Get(ctx, key)
	if err == nil {
		var n int
		if n, err = strconv.Atoi(string(kv.Value)); err == nil {
			_, err = s.Put(ctx, key, []byte(strconv.Itoa(n+1)), store.Any)
		}
	}
	if uerr := unlock(); err == nil {
		err = uerr
	}
	return err
}

// testLockReleasedOnClose: a holder that closes its Store (as a process that
// exits) without unlocking frees the lock for the next waiter.
func testLockReleasedOnClose(t *testing.T, h *harness) {
	ctx := testContext(t)
	a, b := h.store(t), h.store(t)
	name := h.key("lock")
	if _, err := a.Lock(ctx, name); err != nil {
		t.Fatal(err)
	}
	waiting := lockAsync(ctx, b, name)
	notWithin(t, waiting, blockedWindow, "B taking the lock A holds")
	if err := a.Close(); err != nil {
		t.Fatalf("closing A: %v", err)
	}
	got := within(t, waiting, 20*time.Second, "B taking the lock after A's store closed")
	if got.err != nil {
		t.Fatalf("B's Lock: %v", got.err)
	}
	if err := got.unlock(); err != nil {
		t.Fatal(err)
	}
}

// testCampaignOneLeader: one leader at a time; Resign hands over at once; closing
// the leader's Store ends its leadership (Lost closes) and the waiting candidate
// wins.
func testCampaignOneLeader(t *testing.T, h *harness) {
	ctx := testContext(t)
	a, b := h.store(t), h.store(t)
	name := h.key("election")

	leaderA, err := a.Campaign(ctx, name, "a")
	if err != nil {
		t.Fatal(err)
	}
	if isClosed(leaderA.Lost()) {
		t.Fatal("A's leadership is lost as soon as won")
	}
	short, cancel := context.WithTimeout(ctx, blockedWindow)
	l, err := b.Campaign(short, name, "b")
	cancel()
	if err == nil {
		_ = l.Resign(ctx)
		t.Fatal("B won the election A leads")
	}

	waitingB := campaignAsync(ctx, b, name, "b")
	notWithin(t, waitingB, blockedWindow, "B winning while A leads")
	if err := leaderA.Resign(ctx); err != nil {
		t.Fatalf("A's Resign: %v", err)
	}
	if !isClosed(leaderA.Lost()) {
		t.Fatal("Lost not closed after Resign returned")
	}
	if err := leaderA.Resign(ctx); err != nil {
		t.Fatalf("a second Resign: %v", err)
	}
	wonB := within(t, waitingB, 15*time.Second, "B winning after A resigned")
	if wonB.err != nil {
		t.Fatalf("B's Campaign: %v", wonB.err)
	}

	waitingA := campaignAsync(ctx, a, name, "a")
	notWithin(t, waitingA, blockedWindow, "A winning while B leads")
	if err := b.Close(); err != nil {
		t.Fatalf("closing B: %v", err)
	}
	within(t, wonB.leadership.Lost(), 15*time.Second, "B's Lost closing after its store closed")
	wonA := within(t, waitingA, 20*time.Second, "A winning after B's store closed")
	if wonA.err != nil {
		t.Fatalf("A's second Campaign: %v", wonA.err)
	}
	if err := wonA.leadership.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}
