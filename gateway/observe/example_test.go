package observe_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/observe"
)

// The life of one failed request as the core reports it: a span continued from
// the client's traceparent and passed upstream, one metrics sample, and (because
// it failed) one access-log record with the token in its query masked.
func Example() {
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{} // keep the example's output stable
		}
		return a
	}
	o := observe.New(observe.Options{
		Role: "ingress", Node: "edge-1",
		Logger:   slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime})),
		Registry: prometheus.NewRegistry(),
	})
	if err := o.Configure(config.TelemetrySpec{AccessLog: config.AccessLogErrors}); err != nil {
		panic(err)
	}

	// Config compile time: resolve the route's metrics once.
	stats := o.Route("public", "default/api#0", "api")

	// Request time.
	r := httptest.NewRequest(http.MethodGet, "/items?token=abc", nil)
	r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx, span := o.StartSpan(r, "default/api#0")
	upstream := http.Header{}
	o.Inject(ctx, upstream)

	status, reason := http.StatusServiceUnavailable, "no_healthy_endpoint"
	stats.Done(status, 2*time.Millisecond, 0, 19)
	if o.AccessEnabled(status) {
		o.Access(&observe.AccessRecord{
			Method: r.Method, Host: r.Host, Path: r.RequestURI, Proto: r.Proto, Status: status,
			BytesOut: 19, Duration: 2 * time.Millisecond, Route: "default/api#0", Cluster: "api",
			TraceID: observe.TraceID(ctx), Reason: reason,
		})
	}
	observe.EndSpan(span, status, reason)

	fmt.Println(strings.HasPrefix(upstream.Get("Traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-"))
	rec := httptest.NewRecorder()
	o.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "portcullis_requests_total{") {
			fmt.Println(line)
		}
	}
	// Output:
	// {"level":"INFO","msg":"access","role":"ingress","node":"edge-1","event":"access","remote":"","user":"","request":"GET /items?token=*** HTTP/1.1","status":503,"bytes":19,"bytes_in":0,"method":"GET","host":"example.com","path":"/items?token=***","proto":"HTTP/1.1","duration_ms":2,"route":"default/api#0","cluster":"api","upstream":"","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","reason":"no_healthy_endpoint","user_agent":"","referer":""}
	// true
	// portcullis_requests_total{cluster="api",code="503",listener="public",role="ingress",route="default/api#0"} 1
}
