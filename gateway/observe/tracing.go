package observe

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/gateway/config"
)

// tracerName is the instrumentation scope of the gateway's spans.
const tracerName = "github.com/portcullis/portcullis/gateway/observe"

// tracing is one tracing setup, replaced whole when the Telemetry spec changes:
// an SDK provider with an OTLP exporter, or (export false) local ids only.
type tracing struct {
	spec   config.Tracing // normalised; zero when not exporting
	export bool
	tp     *sdktrace.TracerProvider // nil when not exporting
	tracer trace.Tracer
}

// normalise fills the defaults of a Tracing spec, so that two specs that mean the
// same compare equal and a reload that changes nothing keeps the exporter.
func (o *Observer) normalise(s config.Tracing) config.Tracing {
	// samplingRate is omitempty in the file format, so 0 is indistinguishable
	// from "not written" and takes the documented default of 1.
	if s.SamplingRate == 0 {
		s.SamplingRate = 1
	}
	if s.ServiceName == "" {
		s.ServiceName = "portcullis-" + o.role
	}
	return s
}

func (t *tracing) same(o *Observer, s *config.Tracing) bool {
	if s == nil || s.Endpoint == "" {
		return !t.export
	}
	return t.export && t.spec == o.normalise(*s)
}

// localTracing makes and propagates trace ids without exporting anything, so logs
// carry a trace id and the upstream gets a traceparent whose parent is this
// gateway's span. It builds the span context itself rather than through an SDK
// provider, because no SDK sampler fits: NeverSample clears the caller's sampled
// flag (and the services behind the gateway would stop recording a trace the
// client asked for), while ParentBased(NeverSample) keeps the flag by recording
// every sampled span into no processor: measured with BenchmarkStartSpanNoExporter,
// 2.5 KiB and 16 allocations per sampled request against 336 B and 6 here, at
// about ten times the time.
//
// A trace this gateway starts is unsampled, since nothing records it: services
// behind it that sample ParentBased will not record it either. Configure an
// endpoint (with a low rate if need be) to start sampled traces at the gateway.
func localTracing() *tracing { return &tracing{} }

// localSpan starts a non-recording span: a new span id, the parent's trace id,
// flags and tracestate, or a new unsampled trace when there is no valid parent.
func localSpan(ctx context.Context) (context.Context, trace.Span) {
	psc := trace.SpanContextFromContext(ctx)
	cfg := trace.SpanContextConfig{SpanID: newSpanID()}
	if psc.IsValid() {
		cfg.TraceID, cfg.TraceFlags, cfg.TraceState = psc.TraceID(), psc.TraceFlags(), psc.TraceState()
	} else {
		cfg.TraceID = newTraceID()
	}
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(cfg))
	return ctx, trace.SpanFromContext(ctx)
}

// newTraceID and newSpanID draw from math/rand/v2's per-thread generator, as the
// SDK does: ids must be unique, not secret, and must not take a lock.
func newTraceID() (id trace.TraceID) {
	for !id.IsValid() {
		binary.LittleEndian.PutUint64(id[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() (id trace.SpanID) {
	for !id.IsValid() {
		binary.LittleEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

// newTracing builds the setup a Tracing spec asks for. It does no I/O: a collector
// that is down at reload time is not a config error, and its spans are counted as
// failed exports instead.
func (o *Observer) newTracing(spec *config.Tracing) (*tracing, error) {
	if spec == nil || spec.Endpoint == "" {
		return localTracing(), nil
	}
	s := o.normalise(*spec)
	if err := checkEndpoint(s.Endpoint); err != nil {
		return nil, err
	}
	if !(s.SamplingRate >= 0 && s.SamplingRate <= 1) { // NaN too
		return nil, fmt.Errorf("telemetry: tracing.samplingRate %v is not between 0 and 1", s.SamplingRate)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(s.Endpoint)}
	if s.Insecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: tracing exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(&countingExporter{SpanExporter: exp, ok: o.m.spansExported, failed: o.m.spansFailed, log: o.log}),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(s.SamplingRate))),
		sdktrace.WithResource(o.resource(s)),
	)
	return &tracing{spec: s, export: true, tp: tp, tracer: tp.Tracer(tracerName)}, nil
}

func (o *Observer) resource(s config.Tracing) *resource.Resource {
	own := resource.NewSchemaless(
		attribute.String("service.name", s.ServiceName),
		attribute.String("service.instance.id", o.node),
		attribute.String("portcullis.role", o.role),
	)
	// Default adds the SDK's attributes and OTEL_RESOURCE_ATTRIBUTES; ours win.
	r, err := resource.Merge(resource.Default(), own)
	if err != nil {
		return own
	}
	return r
}

// checkEndpoint accepts host:port with a port number, as the file format says.
// config.Validate checks it too; this keeps Configure safe on its own.
func checkEndpoint(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("telemetry: tracing.endpoint %q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("telemetry: tracing.endpoint %q has no valid port", s)
	}
	return nil
}

func (t *tracing) shutdown(ctx context.Context) error {
	if t.tp == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// countingExporter counts delivered and failed spans, and reports failures on the
// gateway's logger. Failures are not returned: the batch processor would hand
// them to OpenTelemetry's process-global error handler, a logger this package
// does not own; it does not retry either way.
type countingExporter struct {
	sdktrace.SpanExporter
	ok, failed prometheus.Counter
	log        *slog.Logger
}

func (e *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.SpanExporter.ExportSpans(ctx, spans); err != nil {
		e.failed.Add(float64(len(spans)))
		e.log.Warn("tracing: span export failed; spans dropped", "event", "tracing", "spans", len(spans), "error", err)
		return nil
	}
	e.ok.Add(float64(len(spans)))
	return nil
}

// StartSpan starts the server span of one request, continuing the trace of the
// request's W3C traceparent/tracestate when it has a valid one, and a new trace
// otherwise. The returned context carries the span; end it with EndSpan.
func (o *Observer) StartSpan(r *http.Request, name string) (context.Context, trace.Span) {
	return o.StartSpanFrom(r.Context(), r, name)
}

// StartSpanFrom is StartSpan with the parent context given apart from r, so a
// caller that has already derived a context need not copy the request to pass it.
func (o *Observer) StartSpanFrom(parent context.Context, r *http.Request, name string) (context.Context, trace.Span) {
	t := o.trc.Load()
	ctx := o.prop.Extract(parent, headerCarrier(r.Header))
	if !t.export {
		return localSpan(ctx)
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		// Only spans that may be exported pay for attributes. The query is left
		// out: it may hold secrets, and url.path is enough to find the request.
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("url.path", r.URL.Path),
			attribute.String("server.address", hostOnly(r.Host)),
			attribute.String("client.address", hostOnly(r.RemoteAddr)),
			attribute.String("network.protocol.version", protoVersion(r)),
			attribute.String("user_agent.original", r.UserAgent()),
		)
	}
	return ctx, span
}

// EndSpan ends a span started by StartSpan with the status sent to the client
// (0 if none) and the proxy's error reason, if any. As OpenTelemetry's HTTP
// conventions say for server spans, 5xx is an error and 4xx is not.
func EndSpan(span trace.Span, status int, reason string) {
	if span.IsRecording() {
		if status > 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		if reason != "" {
			span.SetAttributes(attribute.String("error.type", reason))
		}
		if status >= 500 || status == 0 {
			span.SetStatus(codes.Error, reason)
		}
	}
	span.End()
}

// Inject writes the traceparent (and tracestate) of the span in ctx into h, the
// headers of the request sent upstream, replacing any the client sent.
func (o *Observer) Inject(ctx context.Context, h http.Header) {
	o.prop.Inject(ctx, headerCarrier(h))
}

// headerCarrier is propagation.HeaderCarrier without its cost on the request
// path: http.Header.Get canonicalises (and so allocates) the lower-case names the
// propagator asks for on every call, and the two it uses are known. It also joins
// repeated tracestate fields, as W3C Trace Context §3.3.1 says a receiver must.
type headerCarrier http.Header

func canonicalKey(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	}
	return http.CanonicalHeaderKey(key)
}

func (h headerCarrier) Get(key string) string {
	k := canonicalKey(key)
	switch v := h[k]; {
	case len(v) == 0:
		return ""
	case len(v) > 1 && k == "Tracestate":
		return strings.Join(v, ",")
	default:
		return v[0]
	}
}

func (h headerCarrier) Set(key, value string) { h[canonicalKey(key)] = []string{value} }

func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// TraceID returns the hex trace id of the span in ctx, or "" when there is none,
// for access-log records and error pages.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func protoVersion(r *http.Request) string {
	switch {
	case r.ProtoMajor == 2:
		return "2"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "1.0"
	}
	return "1.1"
}
