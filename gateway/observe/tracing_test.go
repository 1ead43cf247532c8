package observe_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/observe"
)

const (
	parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpan  = "00f067aa0ba902b7"
)

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$`)

func TestPropagationWithoutExporter(t *testing.T) {
	tests := []struct {
		name        string
		traceparent string
		tracestate  []string
		wantTrace   string // "" means a new one
		wantFlags   string
	}{
		{name: "no traceparent starts a trace", wantFlags: "00"},
		{name: "sampled parent is continued and stays sampled", traceparent: "00-" + parentTrace + "-" + parentSpan + "-01", tracestate: []string{"congo=t61rcWkgMzE"}, wantTrace: parentTrace, wantFlags: "01"},
		{name: "repeated tracestate fields are joined", traceparent: "00-" + parentTrace + "-" + parentSpan + "-01", tracestate: []string{"congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"}, wantTrace: parentTrace, wantFlags: "01"},
		{name: "unsampled parent is continued and stays unsampled", traceparent: "00-" + parentTrace + "-" + parentSpan + "-00", wantTrace: parentTrace, wantFlags: "00"},
		{name: "malformed traceparent starts a trace", traceparent: "00-" + parentTrace + "-zz-01", wantFlags: "00"},
		{name: "all-zero trace id starts a trace", traceparent: "00-00000000000000000000000000000000-" + parentSpan + "-01", wantFlags: "00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := newObserver(t)
			r := httptest.NewRequest(http.MethodGet, "http://api.example.com/x", nil)
			if tc.traceparent != "" {
				r.Header.Set("Traceparent", tc.traceparent)
			}
			for _, ts := range tc.tracestate {
				r.Header.Add("Tracestate", ts)
			}
			ctx, span := o.StartSpan(r, "GET /x")
			defer observe.EndSpan(span, 200, "")

			tid := observe.TraceID(ctx)
			if tc.wantTrace != "" && tid != tc.wantTrace {
				t.Fatalf("TraceID = %q, want the parent's %q", tid, tc.wantTrace)
			}
			if tc.wantTrace == "" && (len(tid) != 32 || tid == parentTrace || tid == strings.Repeat("0", 32)) {
				t.Fatalf("TraceID = %q, want a new valid trace id", tid)
			}

			// The upstream request: whatever the client sent is replaced.
			up := http.Header{"Traceparent": {"00-" + strings.Repeat("1", 32) + "-" + strings.Repeat("2", 16) + "-01"}}
			o.Inject(ctx, up)
			m := traceparentRE.FindStringSubmatch(up.Get("Traceparent"))
			if m == nil {
				t.Fatalf("injected traceparent %q is not W3C", up.Get("Traceparent"))
			}
			if m[1] != tid {
				t.Errorf("injected trace id %s, want %s", m[1], tid)
			}
			if m[2] != span.SpanContext().SpanID().String() || m[2] == parentSpan {
				t.Errorf("injected parent id %s, want the gateway's span %s", m[2], span.SpanContext().SpanID())
			}
			if m[3] != tc.wantFlags {
				t.Errorf("injected flags %s, want %s", m[3], tc.wantFlags)
			}
			if got, want := up.Values("Tracestate"), strings.Join(tc.tracestate, ","); strings.Join(got, "|") != want {
				t.Errorf("injected tracestate %q, want one field %q", got, want)
			}
		})
	}
}

func TestTraceIDWithoutSpan(t *testing.T) {
	if got := observe.TraceID(context.Background()); got != "" {
		t.Fatalf("TraceID of a bare context = %q, want empty", got)
	}
}

// collector is a real OTLP/HTTP receiver: it decodes the protobuf the exporter
// sends, as an OpenTelemetry Collector would.
type collector struct {
	srv    *httptest.Server
	status int           // answer with this instead of 200 when set
	delay  time.Duration // answer this late, as a slow collector would

	mu    sync.Mutex
	spans []exported
}

type exported struct {
	span     *tracepb.Span
	resource map[string]string
}

func newCollector(t *testing.T, status int) *collector {
	c := &collector{status: status}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) endpoint() string { return strings.TrimPrefix(c.srv.URL, "http://") }

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	time.Sleep(c.delay)
	if c.status != 0 {
		http.Error(w, "refused by test", c.status)
		return
	}
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, exported{span: s, resource: res})
			}
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// got returns the spans received so far. Shutdown flushes synchronously (the
// exporter returns after the collector answered), so tests read this right after
// it, without polling: a span that arrives later was not flushed and is a bug.
func (c *collector) got() []exported {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]exported(nil), c.spans...)
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.spans)
}

func attr(s *tracepb.Span, key string) any {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			switch v := kv.GetValue(); {
			case v.GetStringValue() != "":
				return v.GetStringValue()
			default:
				return v.GetIntValue()
			}
		}
	}
	return nil
}

// serveOne runs one request through StartSpan/Inject/EndSpan as the core would
// and returns the traceparent the upstream received.
func serveOne(t *testing.T, o *observe.Observer, traceparent string, status int, reason string) string {
	t.Helper()
	var seen string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Get("Traceparent")
		w.WriteHeader(status)
	}))
	defer upstream.Close()

	in := httptest.NewRequest(http.MethodGet, "http://api.example.com/items/7?token=x", nil)
	in.RemoteAddr = "192.0.2.1:5555"
	if traceparent != "" {
		in.Header.Set("Traceparent", traceparent)
	}
	ctx, span := o.StartSpan(in, "default/api#0")
	out, err := http.NewRequestWithContext(ctx, http.MethodGet, upstream.URL+"/items/7", nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Inject(ctx, out.Header)
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	observe.EndSpan(span, resp.StatusCode, reason)
	return seen
}

func TestOTLPExport(t *testing.T) {
	col := newCollector(t, 0)
	o, _ := newObserver(t)
	err := o.Configure(config.TelemetrySpec{Tracing: &config.Tracing{Endpoint: col.endpoint(), Insecure: true, ServiceName: "edge"}})
	if err != nil {
		t.Fatal(err)
	}
	sampled := serveOne(t, o, "00-"+parentTrace+"-"+parentSpan+"-01", http.StatusServiceUnavailable, "no_healthy_endpoint")
	unsampled := serveOne(t, o, "00-"+strings.Repeat("ab", 16)+"-"+parentSpan+"-00", http.StatusOK, "")
	root := serveOne(t, o, "", http.StatusOK, "")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	spans := col.got()
	if len(spans) != 2 {
		t.Fatalf("collector got %d spans, want 2 (the unsampled parent's must not be exported)", len(spans))
	}
	byTrace := map[string]exported{}
	for _, s := range spans {
		byTrace[hex.EncodeToString(s.span.GetTraceId())] = s
	}

	// The sampled request: same trace as the incoming traceparent, child of the
	// client's span, parent of the upstream's.
	s, ok := byTrace[parentTrace]
	if !ok {
		t.Fatalf("no exported span has the incoming trace id %s", parentTrace)
	}
	m := traceparentRE.FindStringSubmatch(sampled)
	if m == nil || m[1] != parentTrace || m[2] != hex.EncodeToString(s.span.GetSpanId()) || m[3] != "01" {
		t.Errorf("upstream got traceparent %q, want trace %s, parent %x, sampled", sampled, parentTrace, s.span.GetSpanId())
	}
	if got := hex.EncodeToString(s.span.GetParentSpanId()); got != parentSpan {
		t.Errorf("parent span id %s, want %s", got, parentSpan)
	}
	for k, want := range map[string]any{
		"http.request.method": "GET", "url.path": "/items/7", "server.address": "api.example.com",
		"client.address": "192.0.2.1", "http.response.status_code": int64(503), "error.type": "no_healthy_endpoint",
	} {
		if got := attr(s.span, k); got != want {
			t.Errorf("attribute %s = %#v, want %#v", k, got, want)
		}
	}
	for _, kv := range s.span.GetAttributes() {
		if strings.Contains(kv.GetValue().GetStringValue(), "token") {
			t.Errorf("attribute %s carries the query: %v", kv.GetKey(), kv.GetValue())
		}
	}
	if s.span.GetKind() != tracepb.Span_SPAN_KIND_SERVER || s.span.GetName() != "default/api#0" {
		t.Errorf("span kind %v name %q, want SERVER default/api#0", s.span.GetKind(), s.span.GetName())
	}
	if s.span.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("status %v, want ERROR for a 503", s.span.GetStatus())
	}
	if s.resource["service.name"] != "edge" || s.resource["portcullis.role"] != "ingress" || s.resource["service.instance.id"] != "node-1" {
		t.Errorf("resource %v, want service.name edge, role ingress, instance node-1", s.resource)
	}

	// A request without traceparent starts a trace; at rate 1 it is sampled.
	m = traceparentRE.FindStringSubmatch(root)
	if m == nil || m[3] != "01" {
		t.Fatalf("root request's upstream traceparent %q, want sampled", root)
	}
	if r, ok := byTrace[m[1]]; !ok || len(r.span.GetParentSpanId()) != 0 {
		t.Errorf("root span for trace %s not exported as a root", m[1])
	}
	if m = traceparentRE.FindStringSubmatch(unsampled); m == nil || m[3] != "00" {
		t.Errorf("unsampled request's upstream traceparent %q, want flags 00", unsampled)
	}

	if got := mustSample(t, scrape(t, o), "portcullis_trace_spans_exported_total", nil); got != 2 {
		t.Errorf("trace_spans_exported_total = %v, want 2", got)
	}
}

func TestSamplingRate(t *testing.T) {
	col := newCollector(t, 0)
	o, _ := newObserver(t)
	// 1e-9 keeps (almost) no new trace, but a sampled parent still wins.
	if err := o.Configure(config.TelemetrySpec{Tracing: &config.Tracing{Endpoint: col.endpoint(), Insecure: true, SamplingRate: 1e-9}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		serveOne(t, o, "", 200, "")
	}
	serveOne(t, o, "00-"+parentTrace+"-"+parentSpan+"-01", 200, "")
	if err := o.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := col.got()
	if len(spans) != 1 || hex.EncodeToString(spans[0].span.GetTraceId()) != parentTrace {
		t.Fatalf("exported %d spans, want only the sampled parent's", len(spans))
	}
}

func TestConfigureBadTracingKeepsRunningSetup(t *testing.T) {
	col := newCollector(t, 0)
	o, _ := newObserver(t)
	good := config.TelemetrySpec{AccessLog: "all", Tracing: &config.Tracing{Endpoint: col.endpoint(), Insecure: true}}
	if err := o.Configure(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []config.Tracing{
		{Endpoint: "collector"},
		{Endpoint: "http://collector:4318"},
		{Endpoint: "collector:0"},
		{Endpoint: "collector:99999"},
		{Endpoint: ":4318"},
		{Endpoint: "collector:4318", SamplingRate: 1.5},
	} {
		err := o.Configure(config.TelemetrySpec{AccessLog: "off", Tracing: &bad})
		if err == nil {
			t.Errorf("Configure accepted tracing %+v", bad)
		}
	}
	if !o.AccessEnabled(200) {
		t.Error("a refused Configure changed the access-log mode")
	}
	serveOne(t, o, "00-"+parentTrace+"-"+parentSpan+"-01", 200, "")
	if err := o.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if spans := col.got(); len(spans) != 1 || hex.EncodeToString(spans[0].span.GetTraceId()) != parentTrace {
		t.Fatal("the span did not reach the collector configured before the refused reloads")
	}
}

// A reload that points tracing elsewhere flushes what the old exporter held (in
// the background, and Shutdown waits for it, however slow the old collector), and
// new spans go to the new collector; turning export off stops export.
func TestReconfigureTracing(t *testing.T) {
	a, b := newCollector(t, 0), newCollector(t, 0)
	a.delay = 200 * time.Millisecond
	o, _ := newObserver(t)
	spec := func(c *collector) config.TelemetrySpec {
		return config.TelemetrySpec{Tracing: &config.Tracing{Endpoint: c.endpoint(), Insecure: true}}
	}
	if err := o.Configure(spec(a)); err != nil {
		t.Fatal(err)
	}
	serveOne(t, o, "", 200, "")
	if err := o.Configure(spec(a)); err != nil { // unchanged: keeps the exporter
		t.Fatal(err)
	}
	serveOne(t, o, "", 200, "")
	if err := o.Configure(spec(b)); err != nil {
		t.Fatal(err)
	}
	serveOne(t, o, "", 200, "")
	if err := o.Configure(config.TelemetrySpec{}); err != nil {
		t.Fatal(err)
	}
	tp := serveOne(t, o, "", 200, "")
	if m := traceparentRE.FindStringSubmatch(tp); m == nil {
		t.Fatalf("without export the upstream got traceparent %q", tp)
	}
	if err := o.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.count() != 2 || b.count() != 1 {
		t.Fatalf("collectors got %d and %d spans, want 2 and 1", a.count(), b.count())
	}
}

func TestExportFailureIsCountedAndLogged(t *testing.T) {
	col := newCollector(t, http.StatusBadRequest)
	o, logs := newObserver(t)
	if err := o.Configure(config.TelemetrySpec{Tracing: &config.Tracing{Endpoint: col.endpoint(), Insecure: true}}); err != nil {
		t.Fatal(err)
	}
	serveOne(t, o, "", 200, "")
	if err := o.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := mustSample(t, scrape(t, o), "portcullis_trace_export_failures_total", nil); got != 1 {
		t.Errorf("trace_export_failures_total = %v, want 1", got)
	}
	if lines := logs.events(t, "tracing"); len(lines) != 1 || lines[0]["level"] != "WARN" || !bytes.Contains([]byte(lines[0]["error"].(string)), []byte("400")) {
		t.Errorf("export failure log = %v, want one WARN line naming the 400", lines)
	}
}
