// Package observe is what a gateway of any role (ingress, egress, sidecar) tells the
// outside about its work, after the fact: Prometheus metrics, one JSON access-log
// record per request worth logging, security events, and OpenTelemetry spans with W3C
// traceparent propagation and OTLP/HTTP export. It serves SM-DR21..SM-DR24 of NIST
// SP 800-204A.
//
// Everything hangs off an *Observer: there are no package-level metrics, loggers or
// tracer providers, so a test (or a second gateway in one process) makes its own and
// reads what it produced. The hot path is paid for at config compile time: Route and
// Upstream resolve every label once, and RouteStats.Done then does no map lookup,
// no label hashing and no allocation. A config holds its handles through a Lease;
// when no config holds a route's, cluster's or endpoint's handle any more, its
// series are deleted (lifecycle.go), so /metrics follows the running config.
//
// It is not for deciding anything: no request is refused, delayed or changed here.
// Limits, policies and retries belong to the packages that apply them; they only
// report what they did.
package observe

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/propagation"

	"github.com/portcullis/portcullis/gateway/config"
)

// Options configure an Observer. Every field has a default.
type Options struct {
	// Role is the gateway role ("ingress", "egress", "sidecar"). It is a constant
	// label of every metric and an attribute of every log line and span.
	// Default "gateway".
	Role string
	// Node names this gateway instance in logs and spans (service.instance.id).
	// Default: the host name.
	Node string
	// Logger receives access-log records, security events and config events. It
	// should have a JSON handler, since log shippers parse these lines. Default: a
	// JSON handler on stderr.
	Logger *slog.Logger
	// AccessLogger, when set, receives the access-log records instead of Logger
	// (the proxy's binaries give it a LineBuffer, so that "all" mode does not cost a
	// write per request). It should have the same handler options as Logger.
	AccessLogger *slog.Logger
	// Registry receives the metrics. Default: a new registry that also carries the
	// Go runtime and process collectors. A caller-supplied registry gets only the
	// gateway's own metrics: the caller decides what else it holds.
	Registry *prometheus.Registry
}

// Observer is the observability of one gateway. Its methods are safe for concurrent
// use. Create it with New, configure it with Configure on every config load, and
// Shutdown it last to flush spans.
type Observer struct {
	role, node string
	log        *slog.Logger // carries role and node on every line
	access     *slog.Logger // the access log: log, or Options.AccessLogger with role and node
	reg        *prometheus.Registry
	m          *metrics

	// tel and trc are read on every request and replaced whole on Configure, so a
	// request sees either the old or the new setup, never half of each.
	tel atomic.Pointer[telemetry]
	trc atomic.Pointer[tracing]
	// prop is always W3C Trace Context, exporting or not, and is the Observer's
	// own rather than OpenTelemetry's process-global propagator.
	prop propagation.TraceContext

	cfgMu    sync.Mutex // serialises Configure, Shutdown and ConfigReload
	version  string     // the running config version, for portcullis_config_info
	retiring sync.WaitGroup

	// statsMu guards the handle caches and their holder counts (lifecycle.go).
	// It is taken when a config is compiled or closed, and on endpoint changes;
	// never per request.
	statsMu   sync.Mutex
	routes    map[routeKey]*RouteStats
	upstreams map[string]*UpstreamStats
	holders

	secLimit logLimiter
}

// telemetry is the part of TelemetrySpec read on the request path.
type telemetry struct {
	mode accessMode
	mask *masker
}

// New returns an Observer with the access log in "errors" mode, the built-in
// mask list and tracing without export (trace ids are still made and propagated).
func New(opts Options) *Observer {
	if opts.Role == "" {
		opts.Role = "gateway"
	}
	if opts.Node == "" {
		opts.Node, _ = os.Hostname()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
	}
	o := &Observer{
		role:      opts.Role,
		node:      opts.Node,
		log:       opts.Logger.With("role", opts.Role, "node", opts.Node),
		access:    opts.Logger.With("role", opts.Role, "node", opts.Node),
		reg:       opts.Registry,
		routes:    make(map[routeKey]*RouteStats),
		upstreams: make(map[string]*UpstreamStats),
		holders:   newHolders(),
	}
	if opts.AccessLogger != nil {
		o.access = opts.AccessLogger.With("role", opts.Role, "node", opts.Node)
	}
	o.m = newMetrics(o.reg, o.role)
	o.tel.Store(&telemetry{mode: accessErrors, mask: newMasker(nil)})
	o.trc.Store(localTracing())
	return o
}

// Registry returns the registry the metrics are in, for an admin listener that
// serves more than /metrics or for tests.
func (o *Observer) Registry() *prometheus.Registry { return o.reg }

// Handler serves the metrics in the Prometheus text (or OpenMetrics) format. A
// collector that fails does not hide the others.
func (o *Observer) Handler() http.Handler {
	return promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
}

// Configure applies a Telemetry spec: the access-log mode, the extra masked
// headers and the tracing setup. It is called on every config load. Either all of
// it applies or, when it returns an error, none of it does and the running setup
// stays: a reload must not lose tracing because of a typo in the endpoint.
// A tracing spec equal to the running one keeps its exporter and queued spans.
func (o *Observer) Configure(t config.TelemetrySpec) error {
	mode, err := parseAccessMode(t.AccessLog)
	if err != nil {
		return err
	}
	tel := &telemetry{mode: mode, mask: newMasker(t.MaskHeaders)}

	o.cfgMu.Lock()
	defer o.cfgMu.Unlock()
	cur := o.trc.Load()
	next := cur
	if !cur.same(o, t.Tracing) {
		next, err = o.newTracing(t.Tracing)
		if err != nil {
			return err
		}
	}
	o.tel.Store(tel)
	if next != cur {
		o.trc.Store(next)
		o.retire(cur)
	}
	return nil
}

// retire flushes and stops a replaced tracing setup in the background, so a reload
// does not wait on a slow collector. Shutdown waits for it.
func (o *Observer) retire(t *tracing) {
	o.retiring.Add(1)
	go func() {
		defer o.retiring.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := t.shutdown(ctx); err != nil {
			o.log.Warn("tracing: flushing the replaced exporter failed", "error", err)
		}
	}()
}

// Shutdown flushes the spans not yet exported and stops the exporter. Spans
// started afterwards are still propagated but not exported. It returns when the
// flush is done or ctx ends.
func (o *Observer) Shutdown(ctx context.Context) error {
	o.cfgMu.Lock()
	cur := o.trc.Swap(localTracing())
	o.cfgMu.Unlock()
	err := cur.shutdown(ctx)

	done := make(chan struct{})
	go func() { o.retiring.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	return err
}

// Config reload outcomes, for ConfigReload.
const (
	ReloadApplied   = "applied"   // the new config is serving
	ReloadRefused   = "refused"   // it failed decoding, validation or compiling; the old one serves
	ReloadUnchanged = "unchanged" // identical bytes; nothing was done
)

// ConfigReload records the outcome of one config load (the first one included):
// a counter by outcome, the time of the last load of each outcome, and for an
// applied config the gauge portcullis_config_info{version} = 1. A refused config
// is logged with its error, since the operator must learn why their change did
// not take.
func (o *Observer) ConfigReload(outcome, version string, err error) {
	o.m.reloads.WithLabelValues(outcome).Inc()
	o.m.reloadTime.WithLabelValues(outcome).SetToCurrentTime()

	o.cfgMu.Lock()
	if outcome == ReloadApplied && version != o.version {
		// Set the new series before deleting the old, so a scrape in between sees
		// two versions rather than none.
		o.m.configInfo.WithLabelValues(version).Set(1)
		if o.version != "" {
			o.m.configInfo.DeleteLabelValues(o.version)
		}
		o.version = version
	}
	o.cfgMu.Unlock()

	switch outcome {
	case ReloadApplied:
		o.log.Info("config applied", "event", "config", "version", version)
	case ReloadRefused:
		o.log.Error("config refused; the running config keeps serving",
			"event", "config", "version", version, "error", err)
	default:
		o.log.Debug("config "+outcome, "event", "config", "version", version)
	}
}
