package observe

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds every collector of one Observer. README.md lists them for operators;
// keep the two in step.
type metrics struct {
	requests, failures *prometheus.CounterVec   // listener, route, cluster, code
	duration           *prometheus.HistogramVec // listener, route, cluster
	bytesIn, bytesOut  *prometheus.CounterVec   // listener, route, cluster

	upRequests      *prometheus.CounterVec   // cluster, code
	upErrors        *prometheus.CounterVec   // cluster, reason
	upDuration      *prometheus.HistogramVec // cluster
	upRetries       *prometheus.CounterVec   // cluster
	endpointHealthy *prometheus.GaugeVec     // cluster, endpoint
	ejections       *prometheus.CounterVec   // cluster, endpoint
	breakerOverflow *prometheus.CounterVec   // cluster, limit

	reloads    *prometheus.CounterVec // outcome
	reloadTime *prometheus.GaugeVec   // outcome
	configInfo *prometheus.GaugeVec   // version

	securityEvents *prometheus.CounterVec // kind
	localReplies   *prometheus.CounterVec // listener, route, reason
	logsDropped    *prometheus.CounterVec // event

	spansExported, spansFailed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, role string) *metrics {
	// From 0.5 ms (a sidecar hop on loopback) to 10 s (a slow upstream near the
	// default timeouts); roughly 1-2.5-5 per decade so quantiles stay within a
	// factor of 2.5 without paying for dozens of buckets on every series.
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	constLabels := prometheus.Labels{"role": role}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portcullis", Name: name, Help: help, ConstLabels: constLabels,
		}, labels))
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "portcullis", Name: name, Help: help, ConstLabels: constLabels,
		}, labels))
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "portcullis", Name: name, Help: help, ConstLabels: constLabels, Buckets: buckets,
		}, labels))
	}
	route := []string{"listener", "route", "cluster"}
	routeCode := []string{"listener", "route", "cluster", "code"}
	spans := counter("trace_spans_exported_total", "Spans accepted by the OTLP collector.")
	spanFails := counter("trace_export_failures_total", "Spans the OTLP exporter failed to deliver (dropped).")
	return &metrics{
		requests: counter("requests_total", "Requests answered, by route, cluster and status code.", routeCode...),
		failures: counter("request_failures_total", "Requests answered with a 5xx status (or an invalid one), by route, cluster and status code.", routeCode...),
		duration: histogram("request_duration_seconds", "Whole-request latency as the client saw it, from request read to last byte written.", route...),
		bytesIn:  counter("request_body_bytes_total", "Request body bytes read from clients.", route...),
		bytesOut: counter("response_body_bytes_total", "Response body bytes written to clients.", route...),

		upRequests:      counter("upstream_requests_total", "Upstream attempts (retries included) by cluster and status code; code 0 means no response.", "cluster", "code"),
		upErrors:        counter("upstream_errors_total", "Upstream attempts that got no response, by cluster and reason.", "cluster", "reason"),
		upDuration:      histogram("upstream_request_duration_seconds", "Latency of one upstream attempt, until response headers or failure.", "cluster"),
		upRetries:       counter("upstream_retries_total", "Retries sent to a cluster.", "cluster"),
		endpointHealthy: gauge("upstream_endpoint_healthy", "1 when the endpoint passes its health checks, 0 when it does not.", "cluster", "endpoint"),
		ejections:       counter("upstream_ejections_total", "Outlier ejections of an endpoint.", "cluster", "endpoint"),
		breakerOverflow: counter("upstream_circuit_breaker_overflow_total", "Requests failed fast because a circuit-breaker limit was reached, by limit.", "cluster", "limit"),

		reloads:    counter("config_reloads_total", "Config loads by outcome (applied, refused, unchanged).", "outcome"),
		reloadTime: gauge("config_last_reload_timestamp_seconds", "Unix time of the last config load with this outcome.", "outcome"),
		configInfo: gauge("config_info", "1 for the version of the config that is serving.", "version"),

		securityEvents: counter("security_events_total", "Security events (malformed requests, rejected framing, auth failures, ...) by kind.", "kind"),
		localReplies:   counter("local_replies_total", "Requests the proxy answered itself with an error instead of the upstream's answer (a filter's refusal such as jwt_expired or rate_limited, no_route, upstream_timeout, ...), by listener, route and reason.", "listener", "route", "reason"),
		logsDropped:    counter("log_records_dropped_total", "Log records not written because their rate limit was reached, by event.", "event"),

		spansExported: spans.WithLabelValues(),
		spansFailed:   spanFails.WithLabelValues(),
	}
}

// register adds c to reg, or returns the collector already registered under the
// same name and role, so that two Observers (say, two gateways in one test) may
// share a registry. Any other clash is a programming error found at start.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic("observe: " + err.Error())
}

// codeTable maps a status code to its pre-resolved metrics without locks or map
// lookups. Codes are grouped in classes (1xx..5xx) whose 100 slots are allocated
// on the first code of the class, so a route costs a few hundred bytes, not the
// 4 KiB of a flat 500-slot array. Each slot is filled once, on the first request
// with that code; racing fillers resolve the same series, so losing the race is
// harmless.
type codeTable[T any] struct {
	classes     [5]atomic.Pointer[[100]atomic.Pointer[T]]
	zero, other atomic.Pointer[T] // code 0 (no response) and codes outside 100..599
}

func (t *codeTable[T]) slot(code int) *atomic.Pointer[T] {
	switch {
	case code == 0:
		return &t.zero
	case code < 100 || code > 599:
		return &t.other
	}
	cls := &t.classes[code/100-1]
	blk := cls.Load()
	if blk == nil {
		cls.CompareAndSwap(nil, new([100]atomic.Pointer[T]))
		blk = cls.Load()
	}
	return &blk[code%100]
}

// each calls f with the code label and value of every filled slot.
func (t *codeTable[T]) each(f func(code string, v *T)) {
	if v := t.zero.Load(); v != nil {
		f("0", v)
	}
	if v := t.other.Load(); v != nil {
		f("other", v)
	}
	for i := range t.classes {
		blk := t.classes[i].Load()
		if blk == nil {
			continue
		}
		for j := range blk {
			if v := blk[j].Load(); v != nil {
				f(strconv.Itoa((i+1)*100+j), v)
			}
		}
	}
}

// fill stores v in an empty slot, or returns what a concurrent filler stored.
func fill[T any](p *atomic.Pointer[T], v *T) *T {
	if p.CompareAndSwap(nil, v) {
		return v
	}
	return p.Load()
}

// codeLabel is the value of the code label. Codes outside 100..599 share one
// label so that a misbehaving upstream cannot grow the series without bound.
func codeLabel(code int) string {
	switch {
	case code == 0:
		return "0"
	case code < 100 || code > 599:
		return "other"
	}
	return strconv.Itoa(code)
}

type routeKey struct{ listener, route, cluster string }

// RouteStats are the metrics of one (listener, route, cluster), resolved once when
// a config is compiled. Keep the pointer next to the compiled route.
type RouteStats struct {
	key                routeKey
	requests, failures *prometheus.CounterVec // for a status code's first request
	duration           prometheus.Observer
	bytesIn, bytesOut  prometheus.Counter
	codes              codeTable[routeCode]
	holders            int // references taken and not released; guarded by Observer.statsMu
}

type routeCode struct {
	requests prometheus.Counter
	failures prometheus.Counter // nil when the code is not a failure
}

// Route returns the metrics of requests served by route on listener and forwarded
// to cluster (empty for redirects and direct responses). Call it at config compile
// time; the same arguments return the same *RouteStats while it is held, so series
// and their pre-resolved handles survive a reload. A handle taken here is held for
// the Observer's lifetime; a config snapshot takes its handles through a Lease
// instead, so that the series of what a reload removed go with it.
func (o *Observer) Route(listener, route, cluster string) *RouteStats {
	return o.holdRoute(listener, route, cluster)
}

func (o *Observer) newRouteStats(k routeKey) *RouteStats {
	return &RouteStats{
		key:      k,
		requests: o.m.requests,
		failures: o.m.failures,
		duration: o.m.duration.WithLabelValues(k.listener, k.route, k.cluster),
		bytesIn:  o.m.bytesIn.WithLabelValues(k.listener, k.route, k.cluster),
		bytesOut: o.m.bytesOut.WithLabelValues(k.listener, k.route, k.cluster),
	}
}

// Done records one answered request: its status code, its whole latency and the
// body bytes read and written. In the steady state it makes no allocation and no
// map lookup.
func (s *RouteStats) Done(code int, total time.Duration, bytesIn, bytesOut int64) {
	p := s.codes.slot(code)
	c := p.Load()
	if c == nil {
		c = s.resolve(p, code)
	}
	c.requests.Inc()
	if c.failures != nil {
		c.failures.Inc()
	}
	s.duration.Observe(total.Seconds())
	if bytesIn > 0 {
		s.bytesIn.Add(float64(bytesIn))
	}
	if bytesOut > 0 {
		s.bytesOut.Add(float64(bytesOut))
	}
}

func (s *RouteStats) resolve(p *atomic.Pointer[routeCode], code int) *routeCode {
	l := codeLabel(code)
	c := &routeCode{requests: s.requests.WithLabelValues(s.key.listener, s.key.route, s.key.cluster, l)}
	// 4xx are the client's doing and stay in requests_total; a failure is what the
	// gateway or its upstreams owe the client, which is what an SLO alert wants.
	if code >= 500 || l == "other" {
		c.failures = s.failures.WithLabelValues(s.key.listener, s.key.route, s.key.cluster, l)
	}
	return fill(p, c)
}

// UpstreamStats are the metrics of the attempts sent to one cluster, resolved once.
type UpstreamStats struct {
	cluster  string
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration prometheus.Observer
	retries  prometheus.Counter
	codes    codeTable[prometheus.Counter]
	holders  int // references taken and not released; guarded by Observer.statsMu
}

// Upstream returns the metrics of one cluster. Call it when the cluster is built;
// the same name returns the same *UpstreamStats while it is held. Like Route, a
// handle taken here is held for the Observer's lifetime; see Lease.
func (o *Observer) Upstream(cluster string) *UpstreamStats {
	return o.holdUpstream(cluster)
}

func (o *Observer) newUpstreamStats(cluster string) *UpstreamStats {
	return &UpstreamStats{
		cluster:  cluster,
		requests: o.m.upRequests,
		errors:   o.m.upErrors,
		duration: o.m.upDuration.WithLabelValues(cluster),
		retries:  o.m.upRetries.WithLabelValues(cluster),
	}
}

// Done records one upstream attempt that got a response with this status code.
// A code of 0 is an attempt without a response, counted as DoneError("unknown").
func (s *UpstreamStats) Done(code int, d time.Duration) {
	if code == 0 {
		s.DoneError("unknown", d)
		return
	}
	s.code(code).Inc()
	s.duration.Observe(d.Seconds())
}

// DoneError records one upstream attempt that got no response: reason is a short
// constant word such as "connect_failure", "reset", "timeout" or "tls". It is
// counted under code 0 and under its reason.
func (s *UpstreamStats) DoneError(reason string, d time.Duration) {
	s.code(0).Inc()
	// Only failing attempts get here, and their cost is dominated by the failure
	// itself, so the label lookup is not worth a cache.
	s.errors.WithLabelValues(s.cluster, reason).Inc()
	s.duration.Observe(d.Seconds())
}

// Retry counts one retry sent to the cluster.
func (s *UpstreamStats) Retry() { s.retries.Inc() }

func (s *UpstreamStats) code(code int) prometheus.Counter {
	p := s.codes.slot(code)
	if c := p.Load(); c != nil {
		return *c
	}
	c := s.requests.WithLabelValues(s.cluster, codeLabel(code))
	return *fill(p, &c)
}

// The cluster-state methods below are called by the upstream package on events,
// not per request, so they resolve labels on each call.

// EndpointHealth records the result of active health checking for one endpoint.
// Call it when an endpoint is first known and when its state changes; every call
// is logged.
func (o *Observer) EndpointHealth(cluster, addr string, healthy bool) {
	if healthy {
		o.m.endpointHealthy.WithLabelValues(cluster, addr).Set(1)
		o.log.Info("endpoint healthy", "event", "upstream", "cluster", cluster, "endpoint", addr)
		return
	}
	o.m.endpointHealthy.WithLabelValues(cluster, addr).Set(0)
	o.log.Warn("endpoint unhealthy", "event", "upstream", "cluster", cluster, "endpoint", addr)
}

// Ejected records an outlier ejection of an endpoint.
func (o *Observer) Ejected(cluster, addr string) {
	o.m.ejections.WithLabelValues(cluster, addr).Inc()
	o.log.Warn("endpoint ejected", "event", "upstream", "cluster", cluster, "endpoint", addr)
}

// BreakerOverflow records a request failed fast because the cluster's limit
// ("connections", "pending", "requests", "retries") was reached. It is not logged:
// under overload it happens on every request, and the counter says it all.
func (o *Observer) BreakerOverflow(cluster, limit string) {
	o.m.breakerOverflow.WithLabelValues(cluster, limit).Inc()
}

// Retry counts one retry sent to the cluster; UpstreamStats.Retry is the same
// without the label lookup.
func (o *Observer) Retry(cluster string) {
	o.m.upRetries.WithLabelValues(cluster).Inc()
}
