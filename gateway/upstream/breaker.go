package upstream

import "sync/atomic"

// Limit names, as passed to Observer.BreakerOverflow: the circuitBreaker field
// whose limit was hit.
const (
	LimitConnections = "maxConnections"
	LimitPending     = "maxPendingRequests"
	LimitRequests    = "maxRequests"
	LimitRetries     = "maxRetries"
)

// breaker holds the cluster-wide counters of the circuit breaker (MS-SS-6). Each
// is a plain atomic counter: over its limit an Acquire fails at once, so a slow
// or failing upstream costs a bounded number of goroutines, connections and
// retries instead of queueing without end.
type breaker struct {
	conns, pending, requests, retries gauge
}

// gauge is one counted resource with its limit. release is built once, so that
// handing it out does not allocate.
type gauge struct {
	n       atomic.Int64
	max     int64
	name    string
	c       *Cluster
	release func()
}

func (b *breaker) init(c *Cluster, conns, pending, requests, retries int64) {
	b.conns.init(c, LimitConnections, conns)
	b.pending.init(c, LimitPending, pending)
	b.requests.init(c, LimitRequests, requests)
	b.retries.init(c, LimitRetries, retries)
}

func (g *gauge) init(c *Cluster, name string, max int64) {
	g.c, g.name, g.max = c, name, max
	g.release = func() { g.n.Add(-1) }
}

func noop() {}

// acquire uses compare-and-swap rather than add-then-undo, so that a refused
// caller never makes the count look higher than it is to a concurrent one.
func (g *gauge) acquire() (release func(), ok bool) {
	for {
		n := g.n.Load()
		if n >= g.max {
			g.c.obs.BreakerOverflow(g.c.name, g.name)
			return noop, false
		}
		if g.n.CompareAndSwap(n, n+1) {
			return g.release, true
		}
	}
}

// AcquireRequest counts one active request against circuitBreaker.maxRequests.
// When ok, call release exactly once when the request ends; when not ok the
// request must fail fast (503) and release is a no-op. Retries are counted
// again by AcquireRetry, beside the request they retry.
func (c *Cluster) AcquireRequest() (release func(), ok bool) { return c.br.requests.acquire() }

// AcquireRetry counts one retry in progress against circuitBreaker.maxRetries;
// when not ok, the proxy gives up retrying. Call release once when the retry ends.
func (c *Cluster) AcquireRetry() (release func(), ok bool) { return c.br.retries.acquire() }

// AcquireConn counts one open upstream connection against
// circuitBreaker.maxConnections, for the endpoint pools: call it before dialling
// and release when the connection closes.
func (c *Cluster) AcquireConn() (release func(), ok bool) { return c.br.conns.acquire() }

// AcquirePending counts one request waiting for a connection against
// circuitBreaker.maxPendingRequests, for the endpoint pools: release it when the
// request gets a connection or gives up.
func (c *Cluster) AcquirePending() (release func(), ok bool) { return c.br.pending.acquire() }

// BreakerStatus is the current count and limit of each circuit-breaker counter.
type BreakerStatus struct {
	Connections, MaxConnections int64
	Pending, MaxPending         int64
	Requests, MaxRequests       int64
	Retries, MaxRetries         int64
}

// Breaker returns the circuit breaker's counters, for /config and metrics.
func (c *Cluster) Breaker() BreakerStatus {
	b := &c.br
	return BreakerStatus{
		Connections: b.conns.n.Load(), MaxConnections: b.conns.max,
		Pending: b.pending.n.Load(), MaxPending: b.pending.max,
		Requests: b.requests.n.Load(), MaxRequests: b.requests.max,
		Retries: b.retries.n.Load(), MaxRetries: b.retries.max,
	}
}
