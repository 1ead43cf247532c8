package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/upstream"
)

// quiet discards logs; tests that care about them say so.
var quiet = slog.New(slog.DiscardHandler)

// addrs returns n endpoint addresses 10.0.0.1:80, 10.0.0.2:80, ...
func addrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.%d.%d:80", (i+1)/256, (i+1)%256)
	}
	return out
}

// static returns a spec with the given addresses and weights (0 = default).
func static(as []string, weights ...int) config.ClusterSpec {
	var s config.ClusterSpec
	for i, a := range as {
		e := config.Endpoint{Address: a}
		if i < len(weights) {
			e.Weight = weights[i]
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	return s
}

func dur(d time.Duration) *config.Duration { v := config.Duration(d); return &v }

// newCluster builds a cluster that is closed when the test ends.
func newCluster(t testing.TB, spec config.ClusterSpec, opts upstream.Options) *upstream.Cluster {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	c, err := upstream.New("test", spec, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// seeded returns a deterministic, concurrency-safe random source.
func seeded(seed uint64) func() uint64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Uint64()
	}
}

// clock is a settable clock for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// observer records events.
type observer struct {
	upstream.NopObserver
	mu       sync.Mutex
	health   []string // "addr=true"
	ejected  []string
	overflow []string
}

var _ upstream.Observer = (*observer)(nil)

func (o *observer) EndpointHealth(cluster, addr string, healthy bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.health = append(o.health, fmt.Sprintf("%s=%v", addr, healthy))
}

func (o *observer) Ejected(cluster, addr string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ejected = append(o.ejected, addr)
}

func (o *observer) BreakerOverflow(cluster, limit string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.overflow = append(o.overflow, limit)
}

func (o *observer) snapshot() (health, ejected, overflow []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.health...), append([]string(nil), o.ejected...), append([]string(nil), o.overflow...)
}

// resolver is a fake Resolver whose answer tests change.
type resolver struct {
	mu    sync.Mutex
	ips   []netip.Addr
	err   error
	calls int
}

var _ upstream.Resolver = (*resolver)(nil)

func (r *resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return nil, r.err
	}
	return append([]netip.Addr(nil), r.ips...), nil
}

func (r *resolver) set(ips ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ips = r.ips[:0]
	for _, s := range ips {
		r.ips = append(r.ips, netip.MustParseAddr(s))
	}
	r.err = nil
}

func (r *resolver) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *resolver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// pool is a fake connection pool that records Close.
type pool struct {
	addr   string
	mu     sync.Mutex
	closed int
}

func (p *pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed++
	return nil
}

func (p *pool) closes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// pools makes pools and remembers them by address.
type pools struct {
	mu  sync.Mutex
	all map[string][]*pool
}

func (ps *pools) New(addr string) io.Closer {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.all == nil {
		ps.all = map[string][]*pool{}
	}
	p := &pool{addr: addr}
	ps.all[addr] = append(ps.all[addr], p)
	return p
}

func (ps *pools) made(addr string) []*pool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]*pool(nil), ps.all[addr]...)
}

// eventually polls cond every few milliseconds until it holds or the deadline
// passes. It is how tests wait for background work: never a fixed sleep.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pick calls Pick with a plain request and fails the test on error.
func pick(t testing.TB, c *upstream.Cluster, req *http.Request) *upstream.Endpoint {
	t.Helper()
	if req == nil {
		req, _ = http.NewRequest(http.MethodGet, "http://svc/", nil)
	}
	ep, err := c.Pick(req, netip.Addr{}, nil)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	return ep
}

// counts picks n times and counts the endpoints chosen, by address.
func counts(t testing.TB, c *upstream.Cluster, n int) map[string]int {
	t.Helper()
	m := map[string]int{}
	for range n {
		m[pick(t, c, nil).Addr]++
	}
	return m
}

func status(c *upstream.Cluster, addr string) upstream.EndpointStatus {
	for _, s := range c.Endpoints() {
		if s.Addr == addr {
			return s
		}
	}
	return upstream.EndpointStatus{}
}

var errBoom = errors.New("boom")
