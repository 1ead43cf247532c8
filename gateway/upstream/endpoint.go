package upstream

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// Result is how one request to an endpoint ended, as the proxy saw it. It feeds
// passive outlier ejection; Begin/End pairs also feed the least-request counts.
type Result uint8

// Results. Only the failures (Status5xx, GatewayError, ConnectFailure, Reset,
// Timeout) count towards outlier.consecutive5xx.
const (
	// Success is any response that is not 5xx: a 4xx is the client's fault, and
	// proves the endpoint alive.
	Success Result = iota
	// Status5xx is a 5xx answer other than 502, 503 and 504.
	Status5xx
	// GatewayError is a 502, 503 or 504 answer.
	GatewayError
	// ConnectFailure is a connection that could not be made.
	ConnectFailure
	// Reset is a connection reset or closed before a response was complete.
	Reset
	// Timeout is an attempt that outlived its per-try timeout.
	Timeout
	// Canceled is an attempt abandoned by the client (or by the proxy after a
	// retry won). It says nothing about the endpoint and is not counted.
	Canceled
)

var resultNames = [...]string{"success", "5xx", "gateway_error", "connect_failure", "reset", "timeout", "canceled"}

// String returns a short word for logs and metrics labels.
func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "unknown"
}

// failure reports whether r counts against the endpoint.
func (r Result) failure() bool { return r >= Status5xx && r <= Timeout }

// ResultOf maps a response status to Success, Status5xx or GatewayError.
func ResultOf(status int) Result {
	switch {
	case status == 502 || status == 503 || status == 504:
		return GatewayError
	case status >= 500 && status <= 599:
		return Status5xx
	}
	return Success
}

// Endpoint flags. An endpoint is eligible for Pick when none is set, which makes
// the check on the hot path one atomic load.
const (
	flagUnhealthy uint32 = 1 << iota // failed active health checks
	flagEjected                      // ejected by outlier detection
	flagRemoved                      // left the cluster (DNS) or the cluster closed
)

// Endpoint is one upstream address of a cluster. The *Endpoint for an address is
// the same object for as long as the address stays in the cluster (DNS refreshes
// keep it), so its health, outlier state and pool survive refreshes.
//
// Addr, Weight and Pool are set when the endpoint is made and never change; treat
// them as read-only. Every method is safe for concurrent use.
type Endpoint struct {
	// Addr is "ip:port" (IPv6 in brackets), the address to dial.
	Addr string
	// Weight is the load-balancing weight, at least 1.
	Weight int
	// Pool is what Options.NewPool made for this endpoint (nil without NewPool).
	// It is closed when the endpoint leaves the cluster or the cluster closes.
	Pool io.Closer

	c        *Cluster
	stickyID [8]byte // opaque name in sticky cookies (sticky.go)

	flags        atomic.Uint32
	ejectedUntil atomic.Int64 // unix nanoseconds; meaningful while flagEjected is set
	consecutive  atomic.Int32 // consecutive failures, for outlier ejection

	// Guarded by c.mu.
	ejections int                // times ejected, the multiplier of baseEjectionTime
	stopCheck context.CancelFunc // stops this endpoint's health checker

	// inflight is written by every request; keep it off the cache line that Pick
	// reads (flags) so that busy endpoints do not slow down picking.
	_        [64]byte
	inflight atomic.Int64
}

// usable reports whether Pick may return e: healthy, not ejected, not removed.
func (e *Endpoint) usable() bool { return e.flags.Load() == 0 }

// Begin marks the start of a request on e (least-request counts it). Call End
// exactly once for each Begin.
func (e *Endpoint) Begin() { e.inflight.Add(1) }

// End marks the end of a request begun with Begin and records its result for
// outlier detection.
func (e *Endpoint) End(r Result) {
	e.inflight.Add(-1)
	if e.c != nil && e.c.od != nil {
		e.c.record(e, r)
	}
}

// InFlight returns the number of requests begun and not yet ended.
func (e *Endpoint) InFlight() int64 { return e.inflight.Load() }

// EndpointStatus is a point-in-time view of one endpoint, for /config and tests.
type EndpointStatus struct {
	Addr    string
	Weight  int
	Healthy bool // by active health checks (always true without them)
	// Ejected is true from an ejection until the endpoint is returned, which
	// happens on the first Pick after EjectedUntil.
	Ejected      bool
	EjectedUntil time.Time // zero when not ejected
	InFlight     int64
}

func (e *Endpoint) status() EndpointStatus {
	f := e.flags.Load()
	st := EndpointStatus{
		Addr:     e.Addr,
		Weight:   e.Weight,
		Healthy:  f&flagUnhealthy == 0,
		Ejected:  f&flagEjected != 0,
		InFlight: e.inflight.Load(),
	}
	if st.Ejected {
		st.EjectedUntil = time.Unix(0, e.ejectedUntil.Load())
	}
	return st
}
