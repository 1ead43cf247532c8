package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/gateway/upstream"
)

// Probe outcomes, as the health-check metric's result label.
const (
	outcomeHealthy   = "healthy"
	outcomeUnhealthy = "unhealthy"
	outcomeError     = "error"
)

// RunHealthChecks probes every endpoint registered with a health_check_path,
// until ctx ends or the Registry is closed. Run it on the leading replica only
// (from the daemon's on-leader hook, with a ctx that ends when leadership is
// lost): its verdicts are written to the store, where every replica's view, and
// so every push, picks them up.
//
// Each endpoint is probed every HealthInterval (HTTP GET, HealthTimeout, at most
// MaxConcurrentProbes at once; 2xx and 3xx are healthy, redirects are not
// followed). A new registration is probed at once and its first answer decides;
// after that, UnhealthyThreshold failures in a row take it out of load balancing
// and HealthyThreshold successes bring it back. A new leader starts from the
// stored verdicts, so a change of leader does not flap anything.
//
// It returns nil when ctx ends, and an error if it is already running or the
// Registry was closed.
func (r *Registry) RunHealthChecks(ctx context.Context) error {
	if !r.checking.CompareAndSwap(false, true) {
		return errors.New("registry: RunHealthChecks is already running")
	}
	defer r.checking.Store(false)
	select {
	case <-r.ready:
	case <-ctx.Done():
		return nil
	case <-r.ctx.Done():
		return errClosed
	}
	c := &checker{
		r:       r,
		client:  newProbeClient(r.opts.HealthTimeout),
		targets: map[string]*target{},
		stale:   map[string]time.Time{},
	}
	defer c.client.CloseIdleConnections()
	return c.run(ctx)
}

var errClosed = errors.New("registry: closed")

// checker is the state of one RunHealthChecks; only its loop goroutine touches it.
type checker struct {
	r       *Registry
	client  *http.Client
	targets map[string]*target   // by endpointKey
	stale   map[string]time.Time // stale verdict key -> when first seen stale
}

// target is one checked registration.
type target struct {
	svc      serviceKey
	addr     string
	id       string
	path     string
	known    bool // there is a verdict, stored or decided here
	healthy  bool
	stored   bool // the store holds this verdict
	streak   int  // consecutive probes disagreeing with the verdict
	detail   string
	due      time.Time
	inFlight bool
}

type probeResult struct {
	key, id string
	outcome string
	detail  string
}

// syncEvery bounds how often the target list is rebuilt from the view: every
// renewal of every registration changes the view, and rebuilding is O(n).
func (c *checker) syncEvery() time.Duration {
	return min(100*time.Millisecond, c.r.opts.HealthInterval/2)
}

func (c *checker) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred later, so run first): probes end promptly
	defer cancel()
	// Every probe can deliver its result without blocking, even after the loop
	// has returned.
	results := make(chan probeResult, c.r.opts.MaxConcurrentProbes)
	inflight := 0
	updated := c.r.view.updated.wait()
	dirty := true
	var lastSync, resyncAt time.Time
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		if !resyncAt.IsZero() && !now.Before(resyncAt) {
			dirty = true
		}
		if dirty && now.Sub(lastSync) >= c.syncEvery() {
			resyncAt = c.sync(ctx, now)
			dirty, lastSync = false, now
		}
		wake := c.launch(ctx, now, &inflight, results, &wg)
		if dirty {
			wake = earliest(wake, lastSync.Add(c.syncEvery()))
		}
		wake = earliest(wake, resyncAt)
		if wake.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(max(wake.Sub(now), time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.r.ctx.Done():
			return errClosed
		case res := <-results:
			inflight--
			c.apply(ctx, res)
		case <-updated:
			updated = c.r.view.updated.wait()
			dirty = true
		case <-timer.C:
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// sync makes the targets follow the view: new registrations are due at once,
// replaced ones start over, gone ones are dropped. It also removes verdicts left
// without their registration, once they have been so for a whole interval (the
// two prefixes are watched apart, so a verdict can be seen a moment before the
// registration it is about). It returns when it wants to run again (zero: only
// on the next change).
func (c *checker) sync(ctx context.Context, now time.Time) time.Time {
	list, stale := c.r.view.forChecker()
	seen := make(map[string]bool, len(list))
	for _, ck := range list {
		key := endpointKey(ck.svc, ck.addr)
		seen[key] = true
		t := c.targets[key]
		if t != nil && t.id == ck.rec.ID {
			// Someone else (a leader that has not yet noticed its loss) may have
			// written another verdict: write ours again after the next probe.
			if t.stored && (ck.verdict == nil || ck.verdict.Healthy != t.healthy) {
				t.stored = false
			}
			continue
		}
		t = &target{svc: ck.svc, addr: ck.addr, id: ck.rec.ID, path: ck.rec.HealthCheckPath, due: now}
		if ck.verdict != nil {
			t.known, t.healthy, t.stored, t.detail = true, ck.verdict.Healthy, true, ck.verdict.Detail
		}
		c.targets[key] = t
	}
	for key := range c.targets {
		if !seen[key] {
			delete(c.targets, key)
		}
	}
	var resync time.Time
	staleNow := make(map[string]bool, len(stale))
	for _, s := range stale {
		staleNow[s.key] = true
		since, ok := c.stale[s.key]
		if !ok {
			since = now
			c.stale[s.key] = now
		}
		if deadline := since.Add(c.r.opts.HealthInterval); now.Before(deadline) {
			resync = earliest(resync, deadline)
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, storeTimeout)
		err := c.r.st.Delete(dctx, s.key, s.rev) // only if unchanged since seen
		cancel()
		if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			c.r.log.Warn("registry: removing a stale health verdict failed", "key", s.key, "err", err)
			resync = earliest(resync, now.Add(c.r.opts.HealthInterval))
			continue
		}
		delete(c.stale, s.key)
	}
	for key := range c.stale {
		if !staleNow[key] {
			delete(c.stale, key)
		}
	}
	return resync
}

// launch starts the probes that are due, within the concurrency bound, and
// returns when the next one not yet due is (zero: none).
func (c *checker) launch(ctx context.Context, now time.Time, inflight *int, results chan<- probeResult, wg *sync.WaitGroup) time.Time {
	var next time.Time
	for key, t := range c.targets {
		switch {
		case t.inFlight:
		case t.due.After(now):
			next = earliest(next, t.due)
		case *inflight < c.r.opts.MaxConcurrentProbes:
			// Otherwise a result will wake the loop and this one gets its turn.
			t.inFlight = true
			*inflight++
			wg.Add(1)
			go func(key, id, url string) {
				defer wg.Done()
				results <- c.probe(ctx, key, id, url)
			}(key, t.id, probeURL(t.addr, t.path))
		}
	}
	return next
}

// probe sends one health check.
func (c *checker) probe(ctx context.Context, key, id, url string) probeResult {
	res := probeResult{key: key, id: id, outcome: outcomeError}
	ctx, cancel := context.WithTimeout(ctx, c.r.opts.HealthTimeout)
	defer cancel()
	status, err := upstream.ProbeHTTP(ctx, c.client, url, "portcullis-registry-health-check")
	if err != nil {
		res.detail = err.Error()
		return res
	}
	if status >= 200 && status < 400 {
		res.outcome = outcomeHealthy
		return res
	}
	res.outcome, res.detail = outcomeUnhealthy, fmt.Sprintf("status %d", status)
	return res
}

// apply moves a target's verdict by one probe result and stores a new verdict.
func (c *checker) apply(ctx context.Context, res probeResult) {
	t := c.targets[res.key]
	if ctx.Err() != nil || t == nil || t.id != res.id {
		return // stopping (a cancelled probe says nothing), or gone or replaced meanwhile
	}
	t.inFlight = false
	t.due = time.Now().Add(c.r.opts.HealthInterval)
	c.r.metrics.checks.WithLabelValues(t.svc.namespace, t.svc.name, res.outcome).Inc()
	ok := res.outcome == outcomeHealthy
	if !ok {
		t.detail = res.detail
	}
	switch {
	case !t.known:
		t.known, t.healthy, t.stored, t.streak = true, ok, false, 0
		c.logVerdict(t, "first check")
	case ok == t.healthy:
		t.streak = 0
	default:
		t.streak++
		threshold := c.r.opts.HealthyThreshold
		if t.healthy {
			threshold = c.r.opts.UnhealthyThreshold
		}
		if t.streak >= threshold {
			t.healthy, t.stored, t.streak = ok, false, 0
			c.logVerdict(t, fmt.Sprintf("%d checks in a row", threshold))
		}
	}
	if !t.stored {
		c.store(ctx, res.key, t)
	}
}

func (c *checker) logVerdict(t *target, why string) {
	attrs := []any{"service", t.svc.String(), "address", t.addr, "healthy", t.healthy, "after", why}
	if !t.healthy {
		attrs = append(attrs, "detail", t.detail)
	}
	c.r.log.Info("registry: endpoint health changed", attrs...)
}

// store writes the target's verdict; on failure it stays unstored and is
// written again after the next probe.
func (c *checker) store(ctx context.Context, key string, t *target) {
	v := verdict{ID: t.id, Healthy: t.healthy, CheckedUnix: time.Now().Unix()}
	if !t.healthy {
		v.Detail = t.detail
	}
	value, err := json.Marshal(v)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if _, err := c.r.st.Put(ctx, HealthPrefix+key, value, store.Any); err != nil {
		c.r.log.Warn("registry: storing a health verdict failed; retrying after the next check", "service", t.svc.String(), "address", t.addr, "err", err)
		return
	}
	t.stored = true
}

// newProbeClient is the health checker's HTTP client: its own transport (no
// proxy from the environment, no redirects followed: a 3xx is an answer, and
// following it could take the probe to another host).
func newProbeClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: timeout}).DialContext,
			MaxIdleConnsPerHost:   1,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: timeout,
			DisableCompression:    true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
