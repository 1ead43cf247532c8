package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/controlplane/store"
)

const (
	// electionName is the store election every replica of one control plane
	// campaigns in.
	electionName = "controlplane"
	// LeaderKey holds the leading replica's name, written by the leader with a
	// TTL, so that every replica can report who leads.
	LeaderKey = "controlplane/leader"
	leaderTTL = 15 * time.Second
)

// election campaigns for leadership until its context ends and runs the
// on-leader hooks while this replica leads, each with a context that ends when
// leadership does.
type election struct {
	st    store.Store
	name  string
	log   *slog.Logger
	gauge prometheus.Gauge
	hooks []func(ctx context.Context)
	retry time.Duration // pause after a failed campaign
}

func (e *election) run(ctx context.Context) {
	for ctx.Err() == nil {
		l, err := e.st.Campaign(ctx, electionName, e.name)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.log.Warn("leader election: campaign failed; retrying", "err", err, "in", e.retry)
			sleepCtx(ctx, e.retry)
			continue
		}
		e.lead(ctx, l)
	}
}

// lead holds leadership until it is lost or ctx ends (then it resigns, so that
// another replica takes over at once instead of after the lease expires).
func (e *election) lead(ctx context.Context, l store.Leadership) {
	e.log.Info("leader election: this replica leads", "name", e.name)
	e.gauge.Set(1)
	defer e.gauge.Set(0)
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.announce(lctx) }()
	for _, hook := range e.hooks {
		wg.Add(1)
		go func() { defer wg.Done(); hook(lctx) }()
	}
	select {
	case <-l.Lost():
		e.log.Warn("leader election: leadership lost; background jobs stop", "name", e.name)
		cancel()
	case <-ctx.Done():
		cancel()
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := l.Resign(rctx); err != nil {
			e.log.Warn("leader election: resigning failed; another replica takes over when the lease expires", "err", err)
		}
		rcancel()
	}
	wg.Wait()
}

// announce writes this replica's name under LeaderKey, renewed well within its
// TTL, while lctx lasts.
func (e *election) announce(ctx context.Context) {
	t := time.NewTicker(leaderTTL / 3)
	defer t.Stop()
	for {
		wctx, cancel := context.WithTimeout(ctx, leaderTTL/3)
		if _, err := e.st.PutWithTTL(wctx, LeaderKey, []byte(e.name), leaderTTL); err != nil && ctx.Err() == nil {
			e.log.Warn("leader election: announcing the leader failed", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// leader returns the leading replica's name, "" when none is known.
func leaderName(ctx context.Context, st store.Store) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	kv, err := st.Get(ctx, LeaderKey)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			return "unknown (" + err.Error() + ")"
		}
		return ""
	}
	return string(kv.Value)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
