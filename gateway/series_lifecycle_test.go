package gateway_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway"
	"github.com/portcullis/portcullis/gateway/observe"
)

// These tests drive real reloads and read /metrics as Prometheus would: the
// series of what a reload removed go once the old snapshot has drained, and
// what stays keeps counting.

// scrapeMetrics returns the admin /metrics body.
func scrapeMetrics(t *testing.T, g *gateway.Gateway) string {
	t.Helper()
	resp, body := get(t, nil, mustReq(t, "GET", "http://"+g.AdminAddr()+"/metrics", nil))
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return string(body)
}

// metricLines returns the series lines of body that start with name and carry
// every label="value" in labels.
func metricLines(body, name string, labels ...string) []string {
	var out []string
next:
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// metricValue is the value of the one series of name with labels; it fails the
// test unless there is exactly one.
func metricValue(t *testing.T, body, name string, labels ...string) float64 {
	t.Helper()
	lines := metricLines(body, name+"{", labels...)
	if len(lines) != 1 {
		t.Fatalf("%s%v: %d series, want 1:\n%s", name, labels, len(lines), grep(body, name))
	}
	f := strings.Fields(lines[0])
	v, err := strconv.ParseFloat(f[len(f)-1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func mustStatus(t *testing.T, url string, want int) {
	t.Helper()
	resp, body := get(t, nil, mustReq(t, "GET", url, nil))
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, body, want)
	}
}

func reload(t *testing.T, g *gateway.Gateway, path, cfg string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
}

func routeYAML(name, prefix, cluster string) string {
	return "---\n" + header + `kind: Route
metadata: {name: ` + name + `}
spec:
  listeners: [pub]
  rules:
    - match: {path: {prefix: ` + prefix + `}}
      forward: {backends: [{cluster: ` + cluster + `}]}
`
}

// A reload removes route "gone" and its cluster "b" while a request of route
// "keep" is in flight: the removed series stay while the old snapshot drains
// (its requests may still record into them), then vanish, and "keep" counts on
// from where it was.
func TestReloadDropsSeriesOfRemovedRouteAndCluster(t *testing.T) {
	arrived, finish := make(chan struct{}), make(chan struct{})
	a := echo(t, "a")
	slow := newSlowBackend(t, arrived, finish)
	cfgV1 := listenerYAML + clusterYAML("a", slow) + clusterYAML("b", deadAddr(t)) + clusterYAML("c", a.Listener.Addr().String()) +
		routeYAML("keep", "/keep", "a") + routeYAML("gone", "/gone", "b") + routeYAML("other", "/other", "c")
	cfgV2 := listenerYAML + clusterYAML("a", slow) + clusterYAML("c", a.Listener.Addr().String()) +
		routeYAML("keep", "/keep", "a") + routeYAML("other", "/other", "c")
	g, base, path := start(t, cfgV1)

	for range 3 {
		mustStatus(t, base+"/keep/x", 200)
	}
	mustStatus(t, base+"/other", 200)
	resp, _ := get(t, nil, mustReq(t, "GET", base+"/gone", nil))
	if resp.StatusCode < 500 {
		t.Fatalf("route to a dead endpoint answered %d", resp.StatusCode)
	}
	gone := func(body string) []string {
		var out []string
		for _, name := range []string{"portcullis_requests_total", "portcullis_request_failures_total", "portcullis_request_duration_seconds",
			"portcullis_response_body_bytes_total", "portcullis_local_replies_total"} {
			out = append(out, metricLines(body, name, `route="default/gone#0"`)...)
		}
		for _, name := range []string{"portcullis_upstream_requests_total", "portcullis_upstream_errors_total", "portcullis_upstream_request_duration_seconds"} {
			out = append(out, metricLines(body, name, `cluster="default/b"`)...)
		}
		return out
	}
	body := scrapeMetrics(t, g)
	if n := len(gone(body)); n < 5 {
		t.Fatalf("only %d series of route gone and cluster b before the reload:\n%s", n, grep(body, "gone"))
	}
	if v := metricValue(t, body, "portcullis_requests_total", `route="default/keep#0"`, `code="200"`); v != 3 {
		t.Fatalf("keep counted %v, want 3", v)
	}

	slowDone := make(chan int, 1)
	go func() {
		resp, err := http.Get(base + "/keep/slow")
		if err != nil {
			slowDone <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slowDone <- resp.StatusCode
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never reached the backend")
	}
	reload(t, g, path, cfgV2)
	mustStatus(t, base+"/gone", 404)
	if left := gone(scrapeMetrics(t, g)); len(left) == 0 {
		t.Fatal("the removed series went at swap time, while the old snapshot still serves a request")
	}

	close(finish)
	select {
	case code := <-slowDone:
		if code != 200 {
			t.Fatalf("the request in flight across the reload got %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not finish")
	}
	// The old snapshot closes when its last request releases it, just after the
	// response went out.
	deadline := time.Now().Add(5 * time.Second)
	for left := gone(scrapeMetrics(t, g)); len(left) > 0; left = gone(scrapeMetrics(t, g)) {
		if time.Now().After(deadline) {
			t.Fatalf("series of the removed route and cluster remain after the old snapshot drained:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}

	mustStatus(t, base+"/keep/y", 200)
	mustStatus(t, base+"/other", 200)
	body = scrapeMetrics(t, g)
	if v := metricValue(t, body, "portcullis_requests_total", `route="default/keep#0"`, `code="200"`); v != 5 {
		t.Errorf("keep counted %v, want 5 (3 before, the one across the reload, one after): its counter must go on", v)
	}
	if v := metricValue(t, body, "portcullis_upstream_requests_total", `cluster="default/a"`, `code="200"`); v != 5 {
		t.Errorf("cluster a counted %v attempts, want 5", v)
	}
	if v := metricValue(t, body, "portcullis_requests_total", `route="default/other#0"`, `code="200"`); v != 2 {
		t.Errorf("other counted %v, want 2", v)
	}
	if got, want := g.Observer().Handles(), (observe.HandleCounts{Routes: 3, Clusters: 2, Endpoints: 2}); got != want {
		t.Errorf("observer keeps %+v, want %+v (no-route, keep, other; a, c)", got, want)
	}
}

// newSlowBackend answers /keep/slow only once finish is closed (signalling
// arrived first), and everything else at once. It returns its address.
func newSlowBackend(t *testing.T, arrived, finish chan struct{}) string {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keep/slow" {
			close(arrived)
			select {
			case <-finish:
			case <-time.After(10 * time.Second):
			}
		}
		io.WriteString(w, "ok")
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// A control plane that renames a route and its cluster on every push must not
// grow the proxy's metrics: after 1,000 reloads the observer holds what the last
// config has, and /metrics shows the last name only.
func TestRenamingReloadsKeepMetricsBounded(t *testing.T) {
	be := echo(t, "be").Listener.Addr().String()
	cfg := func(i int) string {
		return listenerYAML + clusterYAML("stable", be) + clusterYAML(fmt.Sprintf("c%d", i), be) +
			routeYAML("stable", "/stable", "stable") + routeYAML(fmt.Sprintf("r%d", i), "/r", fmt.Sprintf("c%d", i))
	}
	g, base, path := start(t, cfg(0))
	const reloads = 1000
	deadline := time.Now().Add(45 * time.Second)
	for i := range reloads {
		if i > 0 {
			reload(t, g, path, cfg(i))
		}
		if i%10 == 0 || i == reloads-1 { // series for a sample of names; the handles exist for all
			mustStatus(t, base+"/r", 200)
			mustStatus(t, base+"/stable", 200)
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d reloads in 45s", i)
		}
	}
	if got, want := g.Observer().Handles(), (observe.HandleCounts{Routes: 3, Clusters: 2, Endpoints: 2}); got != want {
		t.Errorf("after %d reloads the observer keeps %+v, want %+v", reloads, got, want)
	}
	body := scrapeMetrics(t, g)
	last := fmt.Sprintf(`route="default/r%d#0"`, reloads-1)
	if n := len(metricLines(body, "portcullis_requests_total{", `route="default/r`)); n != 1 {
		t.Errorf("%d requests_total series of renamed routes, want 1 (the last):\n%s", n, grep(body, "portcullis_requests_total"))
	}
	if v := metricValue(t, body, "portcullis_requests_total", last); v != 1 {
		t.Errorf("the last name counted %v, want 1", v)
	}
	if n := len(metricLines(body, "portcullis_upstream_requests_total{", `cluster="default/c`)); n != 1 {
		t.Errorf("%d upstream series of renamed clusters, want 1", n)
	}
	if v := metricValue(t, body, "portcullis_requests_total", `route="default/stable#0"`); v != reloads/10+1 {
		t.Errorf("the stable route counted %v across the reloads, want %d", v, reloads/10+1)
	}
	if n := len(strings.Split(body, "\n")); n > 2000 {
		t.Errorf("/metrics has %d lines after %d reloads", n, reloads)
	}
}

// An endpoint removed from a cluster (here by a reload, as a control-plane push
// of registry endpoints does) loses its endpoint series.
func TestReloadDropsSeriesOfRemovedEndpoint(t *testing.T) {
	live, dead := echo(t, "live").Listener.Addr().String(), deadAddr(t)
	cluster := func(addrs ...string) string {
		return clusterYAML("a", addrs...) + `  healthCheck: {path: /healthz, interval: 20ms, timeout: 1s, unhealthyThreshold: 1}
`
	}
	g, _, path := start(t, listenerYAML+cluster(live, dead)+routeYAML("r", "/", "a"))
	healthOf := func(body, addr string) []string {
		return metricLines(body, "portcullis_upstream_endpoint_healthy{", `endpoint="`+addr+`"`)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(healthOf(scrapeMetrics(t, g), dead)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the dead endpoint was never reported unhealthy")
		}
		time.Sleep(20 * time.Millisecond)
	}
	reload(t, g, path, listenerYAML+cluster(live)+routeYAML("r", "/", "a"))
	// Nothing was in flight, so the old snapshot and its cluster closed in Reload.
	if s := healthOf(scrapeMetrics(t, g), dead); len(s) != 0 {
		t.Errorf("the removed endpoint's health series remains: %q", s)
	}
	if got := g.Observer().Handles().Endpoints; got != 1 {
		t.Errorf("observer keeps %d endpoints, want 1", got)
	}
}
