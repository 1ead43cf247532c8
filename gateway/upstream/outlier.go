package upstream

import (
	"sync/atomic"
	"time"
)

// maxEjectionTime caps baseEjectionTime x ejections, so that an endpoint that
// failed often in the past is not kept out for hours after it recovered (Envoy's
// default max_ejection_time). A baseEjectionTime above it is used as is.
const maxEjectionTime = 5 * time.Minute

// outlier is passive outlier detection: endpoints that fail the traffic passing
// through them are ejected for a while, even when their health checks pass
// (a health endpoint can be fine while the real ones fail).
type outlier struct {
	threshold  int32         // consecutive failures that eject
	base       time.Duration // ejection time per ejection so far
	maxPercent int           // of the cluster's endpoints, ejected at most

	ejected    atomic.Int32 // endpoints ejected now
	nextReturn atomic.Int64 // unix ns of the earliest due return, while ejected > 0
	returning  atomic.Bool  // a return sweep is queued
}

// record counts a result against e; called from Endpoint.End on the request path.
func (c *Cluster) record(e *Endpoint, r Result) {
	switch {
	case r == Success:
		// Load first: most responses succeed, and a store on every one would bounce
		// the cache line between cores for nothing.
		if e.consecutive.Load() != 0 {
			e.consecutive.Store(0)
		}
	case r.failure():
		if e.consecutive.Add(1) >= c.od.threshold {
			c.eject(e)
		}
	}
}

// eject takes e out of load balancing for baseEjectionTime x (ejections so far
// + 1), unless that would put more than maxEjectionPercent of the endpoints out.
func (c *Cluster) eject(e *Endpoint) {
	od := c.od
	now := c.now()
	c.mu.Lock()
	if c.closed || e.flags.Load()&(flagEjected|flagRemoved) != 0 {
		c.mu.Unlock()
		return
	}
	// Start counting afresh whether or not the ejection happens: a refused
	// ejection should not be retried, under the lock, on every further failure.
	e.consecutive.Store(0)
	if int(od.ejected.Load())+1 > len(c.all)*od.maxPercent/100 {
		c.mu.Unlock()
		c.log.Debug("outlier ejection refused: maxEjectionPercent reached", "addr", e.Addr)
		return
	}
	e.ejections++
	d := od.base * time.Duration(e.ejections)
	if cap := max(od.base, maxEjectionTime); d > cap || d < 0 {
		d = cap
	}
	until := now.Add(d).UnixNano()
	e.ejectedUntil.Store(until)
	// nextReturn before ejected, so that a Pick that sees the new count also
	// sees a return time that covers it.
	if od.ejected.Load() == 0 || until < od.nextReturn.Load() {
		od.nextReturn.Store(until)
	}
	e.flags.Or(flagEjected)
	od.ejected.Add(1)
	n := e.ejections
	c.obs.Ejected(c.name, e.Addr) // under the lock, as setHealth's report
	c.mu.Unlock()

	c.log.Warn("endpoint ejected", "addr", e.Addr, "for", d, "ejections", n)
	c.rebuildAsync()
}

// maybeReturn is called by Pick. Its common case is one atomic load; once an
// ejection is due it queues one sweep in the background, so that no request
// waits for the balancer to be rebuilt. Returns are driven by Pick rather than a
// timer so that they follow Options.Now, and cost nothing while no traffic flows.
func (c *Cluster) maybeReturn() {
	od := c.od
	if od.ejected.Load() == 0 || c.now().UnixNano() < od.nextReturn.Load() {
		return
	}
	if od.returning.Load() || !od.returning.CompareAndSwap(false, true) {
		return
	}
	go c.returnDue()
}

// returnDue puts back every endpoint whose ejection time has passed.
func (c *Cluster) returnDue() {
	od := c.od
	now := c.now().UnixNano()
	var back []string
	c.mu.Lock()
	od.returning.Store(false)
	if c.closed {
		c.mu.Unlock()
		return
	}
	next := int64(0)
	for _, ep := range c.all {
		if ep.flags.Load()&flagEjected == 0 {
			continue
		}
		if until := ep.ejectedUntil.Load(); until > now {
			if next == 0 || until < next {
				next = until
			}
			continue
		}
		ep.consecutive.Store(0)
		ep.flags.And(^flagEjected)
		od.ejected.Add(-1)
		back = append(back, ep.Addr)
	}
	od.nextReturn.Store(next)
	c.rebuildLocked()
	c.mu.Unlock()
	for _, addr := range back {
		c.log.Info("endpoint returned from ejection", "addr", addr)
	}
}

// forgetLocked drops e from the ejection count when it leaves the cluster.
func (c *Cluster) forgetLocked(e *Endpoint) {
	if c.od != nil && e.flags.Load()&flagEjected != 0 {
		c.od.ejected.Add(-1)
	}
}
