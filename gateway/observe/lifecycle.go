package observe

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The lifecycle of series.
//
// Every series labelled by a route, a listener, a cluster or an endpoint belongs to
// a handle that counts its holders:
//
//   - a *RouteStats (listener, route, cluster) and an *UpstreamStats (cluster) are
//     held by the Leases that returned them, one reference per call: a config
//     snapshot takes one Lease and releases it when it closes, which is after its
//     in-flight requests have drained, so a retired snapshot's last requests
//     still count;
//   - an endpoint (cluster, address) is held by each upstream cluster object that
//     has it, between EndpointAdded and EndpointRemoved.
//
// The next snapshot takes its handles before the previous one releases its own,
// so a route or cluster that stays in the config never drops to zero holders: it
// keeps the same handle and its counters go on from where they were. When the
// count of a handle falls to zero, its series are deleted from the registry and
// the handle leaves the caches; a later config naming it again starts afresh, as
// a new series (which Prometheus' rate() reads as a counter reset).
//
// All of this happens at compile and close time under statsMu; the request path
// (RouteStats.Done, UpstreamStats.Done) is untouched.

// Lease holds stats handles for one holder, normally a compiled config snapshot,
// and gives them back together with Release. Route and Upstream must not be called
// after Release. A nil *Lease returns nil handles and releases nothing.
type Lease struct {
	o        *Observer
	routes   []*RouteStats    // one entry per reference taken
	clusters []*UpstreamStats // likewise
	released bool
}

// NewLease returns an empty Lease on o. Leases are not safe for concurrent use:
// one holder fills its lease while it compiles, and releases it once.
func (o *Observer) NewLease() *Lease { return &Lease{o: o} }

// Route is Observer.Route, held until Release.
func (l *Lease) Route(listener, route, cluster string) *RouteStats {
	if l == nil {
		return nil
	}
	l.mustBeHeld()
	s := l.o.holdRoute(listener, route, cluster)
	l.routes = append(l.routes, s)
	return s
}

// Upstream is Observer.Upstream, held until Release. A holder that carries over a
// cluster built by an earlier holder takes it again here, so that the cluster's
// series outlive the earlier holder.
func (l *Lease) Upstream(cluster string) *UpstreamStats {
	if l == nil {
		return nil
	}
	l.mustBeHeld()
	s := l.o.holdUpstream(cluster)
	l.clusters = append(l.clusters, s)
	return s
}

func (l *Lease) mustBeHeld() {
	if l.released {
		panic("observe: stats taken from a released Lease")
	}
}

// Release gives back every handle of the lease. The series of a handle no other
// lease holds are deleted. Release is idempotent. Call it once nothing records
// into the lease's handles any more: a handle released to zero holders no longer
// reaches the registry.
func (l *Lease) Release() {
	if l == nil {
		return
	}
	o := l.o
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	if l.released {
		return
	}
	l.released = true
	for _, s := range l.routes {
		o.releaseRouteLocked(s)
	}
	for _, s := range l.clusters {
		o.releaseUpstreamLocked(s)
	}
	l.routes, l.clusters = nil, nil
}

// HandleCounts are the sizes of an Observer's handle caches.
type HandleCounts struct {
	Routes    int // (listener, route, cluster) handles
	Clusters  int // cluster handles
	Endpoints int // (cluster, endpoint) pairs added and not yet removed
}

// Handles reports how many handles the Observer keeps. It is for tests and
// diagnostics: with every holder releasing what it took, the counts follow the
// running config, not the history of reloads.
func (o *Observer) Handles() HandleCounts {
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	return HandleCounts{Routes: len(o.routes), Clusters: len(o.upstreams), Endpoints: len(o.endpoints)}
}

type endpointKey struct{ cluster, addr string }

// holders counts, under statsMu, the holders of the series that are labelled by
// less than a whole handle key.
type holders struct {
	// routeNames counts the held RouteStats per route name: local_replies_total
	// is labelled by the listener the request came in on, which may be any of
	// the route's listeners, so its series go with the route's name.
	routeNames map[string]int
	// listeners counts the held RouteStats per listener, the listener's own
	// no-route stats included: local_replies_total of a listener that is gone
	// (no_route, bad_path, and routes it served) goes with it.
	listeners map[string]int
	// endpoints counts the cluster objects that have an endpoint.
	endpoints map[endpointKey]int
}

func newHolders() holders {
	return holders{routeNames: map[string]int{}, listeners: map[string]int{}, endpoints: map[endpointKey]int{}}
}

func (o *Observer) holdRoute(listener, route, cluster string) *RouteStats {
	k := routeKey{listener, route, cluster}
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	s, ok := o.routes[k]
	if !ok {
		s = o.newRouteStats(k)
		o.routes[k] = s
	}
	s.holders++
	if route != "" {
		o.routeNames[route]++
	}
	o.listeners[listener]++
	return s
}

func (o *Observer) releaseRouteLocked(s *RouteStats) {
	k := s.key
	if s.holders--; s.holders == 0 {
		delete(o.routes, k)
		o.deleteRouteSeries(s)
	}
	if k.route != "" && decrement(o.routeNames, k.route) {
		o.m.localReplies.DeletePartialMatch(prometheus.Labels{"route": k.route})
	}
	if decrement(o.listeners, k.listener) {
		o.m.localReplies.DeletePartialMatch(prometheus.Labels{"listener": k.listener})
	}
}

// deleteRouteSeries deletes the series of s by their exact labels, which are
// known: the codes resolved in s.codes are all the codes it ever counted. This
// keeps a removal from scanning the series of every other route.
func (o *Observer) deleteRouteSeries(s *RouteStats) {
	k := s.key
	s.codes.each(func(code string, c *routeCode) {
		o.m.requests.DeleteLabelValues(k.listener, k.route, k.cluster, code)
		if c.failures != nil {
			o.m.failures.DeleteLabelValues(k.listener, k.route, k.cluster, code)
		}
	})
	o.m.duration.DeleteLabelValues(k.listener, k.route, k.cluster)
	o.m.bytesIn.DeleteLabelValues(k.listener, k.route, k.cluster)
	o.m.bytesOut.DeleteLabelValues(k.listener, k.route, k.cluster)
}

func (o *Observer) holdUpstream(cluster string) *UpstreamStats {
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	s, ok := o.upstreams[cluster]
	if !ok {
		s = o.newUpstreamStats(cluster)
		o.upstreams[cluster] = s
	}
	s.holders++
	return s
}

func (o *Observer) releaseUpstreamLocked(s *UpstreamStats) {
	if s.holders--; s.holders > 0 {
		return
	}
	delete(o.upstreams, s.cluster)
	// A cluster goes rarely and its label sets (error reasons, breaker limits,
	// endpoints) are open-ended, so match on the label rather than track them.
	by := prometheus.Labels{"cluster": s.cluster}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		o.m.upRequests, o.m.upErrors, o.m.upDuration, o.m.upRetries,
		o.m.endpointHealthy, o.m.ejections, o.m.breakerOverflow,
	} {
		v.DeletePartialMatch(by)
	}
}

// decrement lowers m[k] and reports whether it reached zero (and was removed).
func decrement(m map[string]int, k string) bool {
	if m[k]--; m[k] > 0 {
		return false
	}
	delete(m, k)
	return true
}

// EndpointAdded records that a cluster object has the endpoint addr, which holds
// its series (health, ejections) until the matching EndpointRemoved. Two objects
// of one cluster (the running one and its rebuilt successor after a reload) may
// hold the same endpoint at once.
func (o *Observer) EndpointAdded(cluster, addr string) {
	o.statsMu.Lock()
	o.endpoints[endpointKey{cluster, addr}]++
	o.statsMu.Unlock()
}

// EndpointRemoved records that an endpoint left a cluster object (a DNS or
// registry change, a reload, the cluster closing). When no object has it any more,
// its series are deleted, so that an address that left does not linger on
// /metrics. An endpoint never added is forgotten at once.
func (o *Observer) EndpointRemoved(cluster, addr string) {
	k := endpointKey{cluster, addr}
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	if n := o.endpoints[k]; n > 1 {
		o.endpoints[k] = n - 1
		return
	}
	delete(o.endpoints, k)
	o.m.endpointHealthy.DeleteLabelValues(cluster, addr)
	o.m.ejections.DeleteLabelValues(cluster, addr)
}
