package observe_test

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/gateway/observe"
)

func TestRouteStatsDone(t *testing.T) {
	type done struct {
		code           int
		d              time.Duration
		bytesIn, bytes int64
	}
	route := map[string]string{"role": "ingress", "listener": "public", "route": "default/api#0", "cluster": "api"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range route {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name  string
		calls []done
		// want maps "metric" or "metric code" to a value; a negative value means
		// the series must not exist.
		want map[[2]string]float64
	}{
		{
			name:  "success counts a request and no failure",
			calls: []done{{200, 3 * time.Millisecond, 10, 100}, {200, 7 * time.Millisecond, 0, 50}},
			want: map[[2]string]float64{
				{"portcullis_requests_total", "200"}:                     2,
				{"portcullis_request_failures_total", "200"}:             -1,
				{"portcullis_request_duration_seconds_count", ""}:        2,
				{"portcullis_request_duration_seconds_sum", ""}:          0.010,
				{"portcullis_request_body_bytes_total", ""}:              10,
				{"portcullis_response_body_bytes_total", ""}:             150,
				{"portcullis_request_duration_seconds_bucket", "0.0025"}: 0,
				{"portcullis_request_duration_seconds_bucket", "0.005"}:  1,
				{"portcullis_request_duration_seconds_bucket", "0.01"}:   2,
			},
		},
		{
			name:  "4xx is not a failure, 5xx is",
			calls: []done{{404, time.Millisecond, 0, 0}, {503, time.Millisecond, 0, 0}, {503, time.Millisecond, 0, 0}},
			want: map[[2]string]float64{
				{"portcullis_requests_total", "404"}:         1,
				{"portcullis_requests_total", "503"}:         2,
				{"portcullis_request_failures_total", "404"}: -1,
				{"portcullis_request_failures_total", "503"}: 2,
			},
		},
		{
			name:  "codes outside 100..599 share one label and count as failures",
			calls: []done{{42, 0, 0, 0}, {999, 0, 0, 0}},
			want: map[[2]string]float64{
				{"portcullis_requests_total", "other"}:         2,
				{"portcullis_request_failures_total", "other"}: 2,
				{"portcullis_requests_total", "999"}:           -1,
			},
		},
		{
			name:  "code 0 means nothing was answered",
			calls: []done{{0, 0, 0, 0}},
			want: map[[2]string]float64{
				{"portcullis_requests_total", "0"}:         1,
				{"portcullis_request_failures_total", "0"}: -1,
			},
		},
		{
			name:  "every class and edge code",
			calls: []done{{100, 0, 0, 0}, {199, 0, 0, 0}, {301, 0, 0, 0}, {499, 0, 0, 0}, {500, 0, 0, 0}, {599, 0, 0, 0}},
			want: map[[2]string]float64{
				{"portcullis_request_failures_total", "499"}: -1,
				{"portcullis_request_failures_total", "500"}: 1,
				{"portcullis_requests_total", "100"}:         1,
				{"portcullis_requests_total", "199"}:         1,
				{"portcullis_requests_total", "301"}:         1,
				{"portcullis_requests_total", "599"}:         1,
				{"portcullis_request_failures_total", "599"}: 1,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := newObserver(t)
			s := o.Route("public", "default/api#0", "api")
			for _, c := range tc.calls {
				s.Done(c.code, c.d, c.bytesIn, c.bytes)
			}
			body := scrape(t, o)
			for k, want := range tc.want {
				labels := route
				switch {
				case k[0] == "portcullis_request_duration_seconds_bucket":
					labels = with("le", k[1])
				case k[1] != "":
					labels = with("code", k[1])
				}
				got, ok := sample(t, body, k[0], labels)
				switch {
				case want < 0 && ok:
					t.Errorf("%s%v = %v, want no such series", k[0], labels, got)
				case want >= 0 && !ok:
					t.Errorf("no series %s%v in:\n%s", k[0], labels, grep(body, k[0]))
				case want >= 0 && fmt.Sprintf("%.6f", got) != fmt.Sprintf("%.6f", want):
					t.Errorf("%s%v = %v, want %v", k[0], labels, got, want)
				}
			}
		})
	}
}

// The same (listener, route, cluster) must give the same stats, so a reload that
// recompiles routes keeps counting into the same series.
func TestRouteIsStableAcrossCalls(t *testing.T) {
	o, _ := newObserver(t)
	a, b := o.Route("l", "r", "c"), o.Route("l", "r", "c")
	if a != b {
		t.Fatal("Route returned two *RouteStats for the same labels")
	}
	if o.Route("l", "r", "other") == a {
		t.Fatal("Route returned the same *RouteStats for another cluster")
	}
	if o.Upstream("c") != o.Upstream("c") {
		t.Fatal("Upstream returned two *UpstreamStats for one cluster")
	}
}

func TestRouteStatsConcurrentFirstUse(t *testing.T) {
	o, _ := newObserver(t)
	s := o.Route("l", "r", "c")
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				s.Done(200+i%3, time.Millisecond, 1, 1) // 200, 201, 202 filled concurrently
			}
		}()
	}
	wg.Wait()
	body := scrape(t, o)
	var total float64
	for _, code := range []string{"200", "201", "202"} {
		total += mustSample(t, body, "portcullis_requests_total", map[string]string{"route": "r", "code": code})
	}
	if total != workers*each {
		t.Fatalf("requests counted %v, want %v", total, workers*each)
	}
}

func TestUpstreamStats(t *testing.T) {
	o, _ := newObserver(t)
	u := o.Upstream("payments")
	u.Done(200, 2*time.Millisecond)
	u.Done(502, 4*time.Millisecond)
	u.DoneError("connect_failure", time.Second)
	u.DoneError("reset", time.Millisecond)
	u.Done(0, time.Millisecond)
	u.Retry()
	o.Retry("payments")

	body := scrape(t, o)
	c := func(k, v string) map[string]string {
		return map[string]string{"role": "ingress", "cluster": "payments", k: v}
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"portcullis_upstream_requests_total", c("code", "200"), 1},
		{"portcullis_upstream_requests_total", c("code", "502"), 1},
		{"portcullis_upstream_requests_total", c("code", "0"), 3},
		{"portcullis_upstream_errors_total", c("reason", "connect_failure"), 1},
		{"portcullis_upstream_errors_total", c("reason", "reset"), 1},
		{"portcullis_upstream_errors_total", c("reason", "unknown"), 1},
		{"portcullis_upstream_request_duration_seconds_count", c("cluster", "payments"), 5},
		{"portcullis_upstream_request_duration_seconds_bucket", c("le", "0.001"), 2},
		{"portcullis_upstream_retries_total", c("cluster", "payments"), 2},
	} {
		if got := mustSample(t, body, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

func TestClusterState(t *testing.T) {
	o, logs := newObserver(t)
	o.EndpointHealth("api", "10.0.0.1:80", true)
	o.EndpointHealth("api", "10.0.0.2:80", true)
	o.EndpointHealth("api", "10.0.0.2:80", false)
	o.EndpointHealth("api", "10.0.0.3:80", true)
	o.EndpointRemoved("api", "10.0.0.3:80")
	o.Ejected("api", "10.0.0.2:80")
	o.Ejected("api", "10.0.0.2:80")
	o.BreakerOverflow("api", "pending")

	body := scrape(t, o)
	ep := func(addr string) map[string]string { return map[string]string{"cluster": "api", "endpoint": addr} }
	if v := mustSample(t, body, "portcullis_upstream_endpoint_healthy", ep("10.0.0.1:80")); v != 1 {
		t.Errorf("healthy endpoint = %v, want 1", v)
	}
	if v := mustSample(t, body, "portcullis_upstream_endpoint_healthy", ep("10.0.0.2:80")); v != 0 {
		t.Errorf("unhealthy endpoint = %v, want 0", v)
	}
	if _, ok := sample(t, body, "portcullis_upstream_endpoint_healthy", ep("10.0.0.3:80")); ok {
		t.Error("a removed endpoint still has a health series")
	}
	if v := mustSample(t, body, "portcullis_upstream_ejections_total", ep("10.0.0.2:80")); v != 2 {
		t.Errorf("ejections = %v, want 2", v)
	}
	if v := mustSample(t, body, "portcullis_upstream_circuit_breaker_overflow_total", map[string]string{"cluster": "api", "limit": "pending"}); v != 1 {
		t.Errorf("breaker overflow = %v, want 1", v)
	}
	var ejected int
	for _, l := range logs.events(t, "upstream") {
		if l["msg"] == "endpoint ejected" && l["endpoint"] == "10.0.0.2:80" && l["level"] == "WARN" {
			ejected++
		}
	}
	if ejected != 2 {
		t.Errorf("logged %d ejections, want 2:\n%s", ejected, logs)
	}
}

func TestConfigReload(t *testing.T) {
	o, logs := newObserver(t)
	before := float64(time.Now().Unix())
	o.ConfigReload(observe.ReloadApplied, "v1", nil)
	o.ConfigReload(observe.ReloadUnchanged, "v1", nil)
	o.ConfigReload(observe.ReloadRefused, "v2", errors.New("route default/api: cluster \"nope\" does not exist"))
	o.ConfigReload(observe.ReloadApplied, "v3", nil)

	body := scrape(t, o)
	for outcome, want := range map[string]float64{"applied": 2, "unchanged": 1, "refused": 1} {
		if got := mustSample(t, body, "portcullis_config_reloads_total", map[string]string{"outcome": outcome}); got != want {
			t.Errorf("reloads{outcome=%q} = %v, want %v", outcome, got, want)
		}
		ts := mustSample(t, body, "portcullis_config_last_reload_timestamp_seconds", map[string]string{"outcome": outcome})
		if ts < before || ts > float64(time.Now().Unix()+1) {
			t.Errorf("last reload time for %s = %v, not around now", outcome, ts)
		}
	}
	if v := mustSample(t, body, "portcullis_config_info", map[string]string{"version": "v3"}); v != 1 {
		t.Errorf("config_info{version=v3} = %v, want 1", v)
	}
	for _, old := range []string{"v1", "v2"} {
		if _, ok := sample(t, body, "portcullis_config_info", map[string]string{"version": old}); ok {
			t.Errorf("config_info still has version %s, which is not serving", old)
		}
	}
	var refused []map[string]any
	for _, l := range logs.events(t, "config") {
		if l["level"] == "ERROR" {
			refused = append(refused, l)
		}
	}
	if len(refused) != 1 || refused[0]["version"] != "v2" || refused[0]["error"] != `route default/api: cluster "nope" does not exist` {
		t.Errorf("refused reload log = %v, want one ERROR line with version v2 and the error", refused)
	}
}

// Two gateways in one process (or one test) may share a registry when their
// roles differ; the series are told apart by the role label.
func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	quiet := slog.New(slog.DiscardHandler)
	in := observe.New(observe.Options{Role: "ingress", Registry: reg, Logger: quiet})
	eg := observe.New(observe.Options{Role: "egress", Registry: reg, Logger: quiet})
	in.Route("l", "r", "c").Done(200, 0, 0, 0)
	eg.Route("l", "r", "c").Done(200, 0, 0, 0)
	eg.Route("l", "r", "c").Done(200, 0, 0, 0)
	body := scrape(t, in)
	for role, want := range map[string]float64{"ingress": 1, "egress": 2} {
		if got := mustSample(t, body, "portcullis_requests_total", map[string]string{"role": role}); got != want {
			t.Errorf("requests{role=%s} = %v, want %v", role, got, want)
		}
	}
}

func TestDefaultRegistryHasRuntimeMetrics(t *testing.T) {
	o := observe.New(observe.Options{Role: "sidecar", Logger: slog.New(slog.DiscardHandler)})
	o.Route("l", "r", "c").Done(204, 0, 0, 0)
	body := scrape(t, o)
	if _, ok := sample(t, body, "go_goroutines", nil); !ok {
		t.Error("default registry has no Go runtime metrics")
	}
	if _, ok := sample(t, body, "portcullis_requests_total", map[string]string{"role": "sidecar", "code": "204"}); !ok {
		t.Error("default registry has no gateway metrics")
	}
}
