// Package upstream is the run-time side of a Cluster: its endpoints (static or
// discovered by DNS), load balancing, active health checks, passive outlier
// ejection, circuit breaking (MS-SS-6) and sticky cookies (MS-SS-10).
//
// It chooses where a request goes; it does not move bytes. Connections belong to
// gateway/transport, which hands this package a constructor for one pool per
// endpoint (Options.NewPool), and retries, timeouts and status mapping belong to
// gateway/proxy, which reports each attempt's outcome back through Endpoint.End.
//
// Request path: Pick, Endpoint.Begin/End and the Acquire* breaker calls are
// lock-free (atomic loads and counters over an immutable endpoint snapshot) and,
// for roundRobin, leastRequest and random, do not allocate. Everything slow (DNS,
// health probes, rebuilding hash tables) happens in background goroutines or
// when the eligible set changes, never per request (MS-SS-7).
package upstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
)

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

// Observer receives the events that metrics count. Calls come from request
// goroutines (BreakerOverflow, Ejected) and background goroutines
// (EndpointHealth, the endpoint changes of a DNS refresh), so implementations must
// be safe for concurrent use and cheap. The events of one endpoint arrive in
// order, under the cluster's lock: EndpointAdded first, EndpointRemoved last, and
// nothing about it after that. Embed NopObserver to stay compatible when methods
// are added.
type Observer interface {
	// EndpointHealth reports a change of an endpoint's active health-check state.
	EndpointHealth(cluster, addr string, healthy bool)
	// Ejected reports an outlier ejection.
	Ejected(cluster, addr string)
	// BreakerOverflow reports a request refused by a circuit-breaker limit; limit
	// is the circuitBreaker field name (LimitRequests, ...).
	BreakerOverflow(cluster, limit string)
	// EndpointAdded reports an endpoint joining the cluster: a static one in New,
	// a discovered one when a DNS answer brings it.
	EndpointAdded(cluster, addr string)
	// EndpointRemoved reports an endpoint leaving the cluster: dropped from a DNS
	// answer, or at Close. Every added endpoint is removed exactly once, so an
	// observer may count the cluster objects holding an address (a rebuilt
	// cluster and the one it replaces share a name and often their addresses).
	EndpointRemoved(cluster, addr string)
}

// NopObserver ignores every event.
type NopObserver struct{}

var _ Observer = NopObserver{}

// EndpointHealth does nothing.
func (NopObserver) EndpointHealth(string, string, bool) {}

// Ejected does nothing.
func (NopObserver) Ejected(string, string) {}

// BreakerOverflow does nothing.
func (NopObserver) BreakerOverflow(string, string) {}

// EndpointAdded does nothing.
func (NopObserver) EndpointAdded(string, string) {}

// EndpointRemoved does nothing.
func (NopObserver) EndpointRemoved(string, string) {}

// ProbeFunc sends one active health-check request for path to ep and returns the
// response status. ctx carries the check's timeout.
type ProbeFunc func(ctx context.Context, ep *Endpoint, path string) (status int, err error)

// Options are the services a cluster uses. Every field may be left zero.
type Options struct {
	// Logger receives state changes (health, ejections, DNS); default
	// slog.Default(). New adds the attribute cluster=<name> to it, so callers
	// need not.
	Logger *slog.Logger
	// Resolver is used for dns discovery; default net.DefaultResolver.
	Resolver Resolver
	// NewPool makes the connection pool of one endpoint, once per endpoint. The
	// pool is closed when the endpoint leaves the cluster or the cluster closes.
	NewPool func(addr string) io.Closer
	// Probe sends one health-check request. Default: a plain HTTP/1.1 GET, which
	// New refuses for clusters with tls or an HTTP/2 protocol (the proxy knows how
	// to speak those and should supply the probe).
	Probe ProbeFunc
	// Observer receives metric events; nil ignores them.
	Observer Observer
	// Now is the clock for outlier ejection and sticky-cookie expiry; default time.Now.
	Now func() time.Time
	// Rand returns uniformly random 64-bit values for the balancers; default
	// math/rand/v2.Uint64. Tests pass a seeded source; it must be safe for
	// concurrent use.
	Rand func() uint64
}

// ErrNoHealthyEndpoint is returned by Pick when no endpoint is healthy and not ejected.
var ErrNoHealthyEndpoint = errors.New("upstream: no healthy endpoint")

// Cluster is one upstream service at run time.
//
// Lifecycle:
//   - New checks the spec and builds the static endpoints, each with its pool;
//     it starts nothing. A DNS cluster has no endpoint until its first lookup
//     (Start's, or an explicit Refresh to warm it before it serves).
//   - Start begins the background work: the DNS refresh loop and one health
//     checker per endpoint, each running its first round at once. Until a check
//     says otherwise every endpoint is healthy.
//   - Pick, Endpoint.Begin/End, the Acquire* calls and StickyCookie serve
//     requests, from any number of goroutines, before or after Start.
//   - Close stops the background work, waits for it, and closes every pool. It
//     is idempotent. A closed cluster still answers Pick from its last endpoint
//     set, so requests in flight on a retired snapshot can finish.
//
// The snapshot compiler carries a Cluster over to the next snapshot when its
// spec is unchanged, which keeps health, outlier state and pools across reloads.
type Cluster struct {
	name     string
	log      *slog.Logger
	obs      Observer
	now      func() time.Time
	rand     func() uint64
	newPool  func(addr string) io.Closer
	probe    ProbeFunc
	resolver Resolver

	policy      string
	hash        hashKey
	sticky      *sticky       // nil without stickyCookie
	hc          *healthConfig // nil without healthCheck
	od          *outlier      // nil without outlierDetection
	dns         *dnsConfig    // nil for static endpoints
	br          breaker
	probeClient *http.Client // the default probe's client, to close its idle connections

	set            atomic.Pointer[hostSet]
	rebuildPending atomic.Bool

	mu      sync.Mutex // guards the fields below; serialises rebuilds of set
	all     []*Endpoint
	started bool
	closed  bool
	ctx     context.Context // background work; cancelled by Close
	cancel  context.CancelFunc

	wg        sync.WaitGroup // background goroutines
	closeOnce sync.Once
}

// hostSet is an immutable snapshot of the endpoints and the balancer over the
// eligible ones. Pick loads it with one atomic load.
type hostSet struct {
	all      []*Endpoint // every endpoint, sorted by Addr
	eligible []*Endpoint // healthy and not ejected when the set was built
	bal      balancer    // over eligible; nil when eligible is empty
	byID     map[[8]byte]*Endpoint
}

// New builds a cluster from its spec. Errors name the spec field, relative to
// the Cluster's spec (for example "loadBalancer.stickyCookie.secretFile: ..."),
// as *FieldError values joined with errors.Join.
func New(name string, spec config.ClusterSpec, opts Options) (*Cluster, error) {
	c := &Cluster{
		name:     name,
		log:      opts.Logger,
		obs:      opts.Observer,
		now:      opts.Now,
		rand:     opts.Rand,
		newPool:  opts.NewPool,
		probe:    opts.Probe,
		resolver: opts.Resolver,
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("cluster", name)
	if c.obs == nil {
		c.obs = NopObserver{}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rand == nil {
		c.rand = rand.Uint64
	}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	static, err := c.configure(spec)
	if err != nil {
		return nil, err
	}
	for _, e := range static {
		c.all = append(c.all, c.newEndpoint(e.addr, e.weight))
	}
	sortByAddr(c.all)
	c.mu.Lock()
	c.rebuildLocked()
	c.mu.Unlock()
	return c, nil
}

// newEndpoint makes the endpoint for addr and reports it added. c.mu must be held
// once the cluster is shared (New's endpoints are made before).
func (c *Cluster) newEndpoint(addr string, weight int) *Endpoint {
	ep := &Endpoint{Addr: addr, Weight: weight, c: c}
	c.obs.EndpointAdded(c.name, addr)
	if c.sticky != nil {
		ep.stickyID = c.sticky.endpointID(addr)
	}
	if c.newPool != nil {
		ep.Pool = c.newPool(addr)
	}
	return ep
}

// Name returns the cluster's name as given to New.
func (c *Cluster) Name() string { return c.name }

// Start begins DNS refresh and active health checks in background goroutines;
// the first DNS lookup and the first probe of every endpoint run at once.
// Calling it again, or after Close, does nothing.
func (c *Cluster) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.closed {
		return
	}
	c.started = true
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if c.dns != nil {
		c.wg.Add(1)
		go c.dnsLoop(c.ctx)
	}
	if c.hc != nil {
		for _, ep := range c.all {
			c.startCheckLocked(ep)
		}
	}
}

// Close stops the background work, waits for it to end and closes every pool.
// It is idempotent; concurrent callers return when the first one is done.
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		if c.cancel != nil {
			c.cancel()
		}
		eps := c.all
		for _, ep := range eps {
			c.obs.EndpointRemoved(c.name, ep.Addr)
		}
		c.mu.Unlock()
		c.wg.Wait()
		for _, ep := range eps {
			closePool(ep, c.log)
		}
		if c.probeClient != nil {
			c.probeClient.CloseIdleConnections()
		}
	})
}

func closePool(ep *Endpoint, log *slog.Logger) {
	if ep.Pool == nil {
		return
	}
	if err := ep.Pool.Close(); err != nil {
		log.Warn("closing endpoint pool", "addr", ep.Addr, "err", err)
	}
}

// Pick chooses an endpoint for req from the healthy, non-ejected ones: the one a
// valid sticky cookie names, else the one the policy chooses. client is the
// downstream address (for hash.sourceIP; may be the zero Addr). exclude, when not
// nil, is avoided (a retry's previous endpoint) unless it is the only one left.
// req may be nil, which hashing policies treat as a missing key.
func (c *Cluster) Pick(req *http.Request, client netip.Addr, exclude *Endpoint) (*Endpoint, error) {
	if c.od != nil {
		c.maybeReturn()
	}
	ep, err := c.pick(req, client, exclude)
	if err != nil && c.od != nil {
		// Nothing to serve from. Rather than fail, end the ejections that are due
		// here and now (and bring the snapshot up to date), then try once more.
		c.returnDue()
		ep, err = c.pick(req, client, exclude)
	}
	return ep, err
}

func (c *Cluster) pick(req *http.Request, client netip.Addr, exclude *Endpoint) (*Endpoint, error) {
	s := c.set.Load()
	if len(s.eligible) == 0 {
		return nil, ErrNoHealthyEndpoint
	}
	if c.sticky != nil && req != nil {
		if ep := c.sticky.lookup(s, req, c.now()); ep != nil && ep != exclude && ep.usable() {
			return ep, nil
		}
	}
	var key uint64
	var hasKey bool
	if c.hash.kind != hashNone {
		key, hasKey = c.hash.key(req, client)
	}
	// The snapshot may be a moment stale (an ejection is applied before the
	// rebuild that drops the endpoint), so check the choice and ask again.
	for try := range 3 {
		if ep := s.bal.pick(key, hasKey, try); ep != exclude && ep.usable() {
			return ep, nil
		}
	}
	return c.scan(s, exclude)
}

// scan is Pick's slow path: the first usable endpoint from a random start.
func (c *Cluster) scan(s *hostSet, exclude *Endpoint) (*Endpoint, error) {
	n := len(s.eligible)
	start := bounded(c.rand(), uint64(n))
	for i := range n {
		ep := s.eligible[(int(start)+i)%n]
		if ep != exclude && ep.usable() {
			return ep, nil
		}
	}
	if exclude != nil && exclude.usable() && slices.Contains(s.eligible, exclude) {
		return exclude, nil
	}
	return nil, ErrNoHealthyEndpoint
}

// Endpoints returns the state of every endpoint, sorted by address.
func (c *Cluster) Endpoints() []EndpointStatus {
	s := c.set.Load()
	out := make([]EndpointStatus, len(s.all))
	for i, ep := range s.all {
		out[i] = ep.status()
	}
	return out
}

// rebuildLocked publishes a new snapshot when the endpoint list or the eligible
// set changed. Hash tables are rebuilt only when the eligible set changed.
func (c *Cluster) rebuildLocked() {
	old := c.set.Load()
	eligible := make([]*Endpoint, 0, len(c.all))
	for _, ep := range c.all {
		if ep.usable() {
			eligible = append(eligible, ep)
		}
	}
	sameEligible := old != nil && slices.Equal(old.eligible, eligible)
	if sameEligible && slices.Equal(old.all, c.all) {
		return
	}
	s := &hostSet{all: c.all, eligible: eligible}
	switch {
	case sameEligible:
		s.bal = old.bal
	case len(eligible) > 0:
		s.bal = c.newBalancer(eligible)
	}
	if c.sticky != nil {
		s.byID = make(map[[8]byte]*Endpoint, len(c.all))
		for _, ep := range c.all {
			s.byID[ep.stickyID] = ep
		}
	}
	c.set.Store(s)
}

// rebuildAsync rebuilds the snapshot in a new goroutine, for callers on the
// request path (End, Pick), which must not wait for a hash table to be built.
// Pick checks each choice, so the short delay is harmless.
func (c *Cluster) rebuildAsync() {
	if c.rebuildPending.Swap(true) {
		return // a rebuild is queued and will see the current state
	}
	go func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.rebuildPending.Store(false)
		c.rebuildLocked()
	}()
}

func sortByAddr(eps []*Endpoint) {
	slices.SortFunc(eps, func(a, b *Endpoint) int { return strings.Compare(a.Addr, b.Addr) })
}
