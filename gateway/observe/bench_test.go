package observe_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/observe"
)

func benchObserver() *observe.Observer {
	return observe.New(observe.Options{
		Role: "ingress", Node: "bench",
		Logger:   slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Registry: prometheus.NewRegistry(),
	})
}

// BenchmarkRouteStatsDone is the per-request metrics cost: it must not allocate.
func BenchmarkRouteStatsDone(b *testing.B) {
	s := benchObserver().Route("public", "default/api#0", "api")
	codes := [...]int{200, 200, 200, 404, 503}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			s.Done(codes[i%len(codes)], 3*time.Millisecond, 128, 4096)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				s.Done(codes[i%len(codes)], 3*time.Millisecond, 128, 4096)
			}
		})
	})
}

func BenchmarkUpstreamStatsDone(b *testing.B) {
	u := benchObserver().Upstream("api")
	b.ReportAllocs()
	for b.Loop() {
		u.Done(200, time.Millisecond)
	}
}

// BenchmarkAccessDisabled is what a request that is not logged pays for the
// access log: one check before any record is built.
func BenchmarkAccessDisabled(b *testing.B) {
	o := benchObserver() // errors mode: a 200 is not logged
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if o.AccessEnabled(200) {
			n++
		}
	}
	if n != 0 {
		b.Fatal("a 200 was to be logged in errors mode")
	}
}

// BenchmarkAccessRecord is the cost of one written record (to io.Discard), for
// comparison: what errors mode saves on every good request.
func BenchmarkAccessRecord(b *testing.B) {
	o := benchObserver()
	rec := &observe.AccessRecord{
		Time: time.Now(), Remote: "192.0.2.7:51234", Method: "GET", Host: "api.example.com",
		Path: "/v1/items?limit=10&token=abc", Proto: "HTTP/1.1", Status: 502, BytesOut: 345,
		Duration: time.Millisecond, Route: "default/api#0", Cluster: "items", Reason: "upstream_reset",
		Headers: http.Header{"Authorization": {"Bearer abc"}, "X-Request-Id": {"r-1"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		o.Access(rec)
	}
}

// BenchmarkStartSpanNoExporter is the tracing cost of a request when nothing is
// exported: start the span, inject traceparent upstream, end it.
func BenchmarkStartSpanNoExporter(b *testing.B) {
	for _, tc := range []struct{ name, traceparent string }{
		{"root", ""},
		{"unsampled_parent", "00-" + parentTrace + "-" + parentSpan + "-00"},
		{"sampled_parent", "00-" + parentTrace + "-" + parentSpan + "-01"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			o := benchObserver()
			if err := o.Configure(config.TelemetrySpec{}); err != nil {
				b.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, "http://api.example.com/x", nil)
			if tc.traceparent != "" {
				r.Header.Set("Traceparent", tc.traceparent)
			}
			up := http.Header{}
			b.ReportAllocs()
			for b.Loop() {
				ctx, span := o.StartSpan(r, "default/api#0")
				o.Inject(ctx, up)
				observe.EndSpan(span, 200, "")
			}
		})
	}
}
