package observe_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/observe"
	"github.com/portcullis/portcullis/gateway/upstream"
)

var _ upstream.Observer = (*observe.Observer)(nil)

// seriesOf returns the lines of body for metric name (every suffix: _bucket,
// _sum, _count) whose labels include every label=value of want.
func seriesOf(body, name string, want ...string) []string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		ok := true
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			if !strings.Contains(line, k+`="`+v+`"`) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// A reload as the snapshot does it: the next config's lease takes its handles,
// then the previous one releases. What only the previous config had is deleted;
// what both have keeps its handle and keeps counting.
func TestLeaseReleaseDeletesWhatNoOtherLeaseHolds(t *testing.T) {
	o, _ := newObserver(t)

	old := o.NewLease()
	kept := old.Route("pub", "default/keep#0", "default/a")
	gone := old.Route("pub", "default/gone#0", "default/b")
	noRoute := old.Route("pub", "", "")
	upA, upB := old.Upstream("default/a"), old.Upstream("default/b")
	kept.Done(200, time.Millisecond, 1, 10)
	kept.Done(200, time.Millisecond, 1, 10)
	gone.Done(200, time.Millisecond, 5, 50)
	gone.Done(503, time.Millisecond, 0, 0)
	noRoute.Done(404, time.Millisecond, 0, 0)
	o.LocalReply("pub", "default/gone#0", "upstream_overflow")
	o.LocalReply("pub", "default/keep#0", "rate_limited")
	o.LocalReply("pub", "", "no_route")
	upA.Done(200, time.Millisecond)
	upB.Done(502, time.Millisecond)
	upB.DoneError("connect_failure", time.Millisecond)
	upB.Retry()
	o.BreakerOverflow("default/b", "requests")

	next := o.NewLease()
	if next.Route("pub", "default/keep#0", "default/a") != kept || next.Upstream("default/a") != upA {
		t.Fatal("a route and a cluster both configs have got new handles; their counters would restart")
	}
	if next.Route("pub", "", "") != noRoute {
		t.Fatal("the listener's no-route stats got a new handle")
	}
	old.Release()
	old.Release() // idempotent

	body := scrape(t, o)
	for _, name := range []string{
		"portcullis_requests_total", "portcullis_request_failures_total", "portcullis_request_duration_seconds",
		"portcullis_request_body_bytes_total", "portcullis_response_body_bytes_total", "portcullis_local_replies_total",
	} {
		if s := seriesOf(body, name, "route=default/gone#0"); len(s) > 0 {
			t.Errorf("series of the removed route remain: %q", s)
		}
	}
	for _, name := range []string{
		"portcullis_upstream_requests_total", "portcullis_upstream_errors_total", "portcullis_upstream_request_duration_seconds",
		"portcullis_upstream_retries_total", "portcullis_upstream_circuit_breaker_overflow_total",
	} {
		if s := seriesOf(body, name, "cluster=default/b"); len(s) > 0 {
			t.Errorf("series of the removed cluster remain: %q", s)
		}
	}
	keep := map[string]string{"route": "default/keep#0", "code": "200"}
	if v := mustSample(t, body, "portcullis_requests_total", keep); v != 2 {
		t.Errorf("kept route = %v, want 2", v)
	}
	if v := mustSample(t, body, "portcullis_local_replies_total", map[string]string{"route": "", "reason": "no_route"}); v != 1 {
		t.Errorf("no_route replies of the kept listener = %v, want 1", v)
	}
	mustSample(t, body, "portcullis_local_replies_total", map[string]string{"route": "default/keep#0"})
	mustSample(t, body, "portcullis_upstream_requests_total", map[string]string{"cluster": "default/a"})

	kept.Done(200, time.Millisecond, 1, 10)
	if v := mustSample(t, scrape(t, o), "portcullis_requests_total", keep); v != 3 {
		t.Errorf("kept route after the reload = %v, want 3: its counter must go on", v)
	}
	if got, want := o.Handles(), (observe.HandleCounts{Routes: 2, Clusters: 1}); got != want {
		t.Errorf("handles %+v, want %+v", got, want)
	}

	next.Release()
	body = scrape(t, o)
	var left []string
	for _, line := range seriesOf(body, "portcullis_") {
		for _, l := range []string{"listener=", "route=", "cluster=", "endpoint="} {
			if strings.Contains(line, l) {
				left = append(left, line)
				break
			}
		}
	}
	if len(left) != 0 {
		t.Errorf("series left after the last lease was released:\n%s", strings.Join(left, "\n"))
	}
	if got := o.Handles(); got != (observe.HandleCounts{}) {
		t.Errorf("handles %+v after the last release, want none", got)
	}

	// A route that comes back later gets a fresh handle that reaches the registry.
	again := o.NewLease()
	again.Route("pub", "default/gone#0", "default/b").Done(201, 0, 0, 0)
	if v := mustSample(t, scrape(t, o), "portcullis_requests_total", map[string]string{"route": "default/gone#0", "code": "201"}); v != 1 {
		t.Errorf("re-added route = %v, want 1", v)
	}
}

// local_replies_total is labelled by the listener a request came in on, which may
// be any of its route's listeners, so its series go when the route's name is no
// longer held by any handle, or when their listener is gone.
func TestLocalRepliesFollowRouteAndListener(t *testing.T) {
	o, _ := newObserver(t)
	old := o.NewLease()
	old.Route("a", "", "")
	old.Route("b", "", "")
	old.Route("a", "default/r#0", "default/c") // attached to a and b; stats under a
	old.Route("a", "default/x#0", "default/c")
	o.LocalReply("a", "default/r#0", "rate_limited")
	o.LocalReply("b", "default/r#0", "jwt_expired")
	o.LocalReply("b", "", "no_route")
	o.LocalReply("a", "default/x#0", "jwt_expired")

	next := o.NewLease() // listener b and route x removed; r moves to cluster d
	next.Route("a", "", "")
	next.Route("a", "default/r#0", "default/d")
	old.Release()

	body := scrape(t, o)
	if v := mustSample(t, body, "portcullis_local_replies_total", map[string]string{"listener": "a", "route": "default/r#0"}); v != 1 {
		t.Errorf("replies of a route still held = %v, want 1", v)
	}
	if s := seriesOf(body, "portcullis_local_replies_total", "listener=b"); len(s) != 0 {
		t.Errorf("listener b is gone but its replies remain: %q", s)
	}
	if s := seriesOf(body, "portcullis_local_replies_total", "route=default/x#0"); len(s) != 0 {
		t.Errorf("route x is gone but its replies remain: %q", s)
	}
	next.Release()
	if s := seriesOf(scrape(t, o), "portcullis_local_replies_total"); len(s) != 0 {
		t.Errorf("local replies left: %q", s)
	}
}

// 1,000 reloads, each renaming a route and moving it to a new cluster, leave as
// many handles and series as one config has.
func TestRenamedRouteLeavesCachesBounded(t *testing.T) {
	o, _ := newObserver(t)
	var prev *observe.Lease
	const reloads = 1000
	for i := range reloads {
		l := o.NewLease()
		l.Route("pub", "", "").Done(404, 0, 0, 0)
		l.Route("pub", "default/stable#0", "default/a").Done(200, time.Millisecond, 1, 1)
		name, cluster := fmt.Sprintf("default/r%d#0", i), fmt.Sprintf("default/c%d", i)
		l.Route("pub", name, cluster).Done(200+i%5, time.Millisecond, 1, 1)
		l.Upstream("default/a").Done(200, time.Millisecond)
		l.Upstream(cluster).DoneError("reset", time.Millisecond)
		o.LocalReply("pub", name, "upstream_reset")
		o.EndpointAdded(cluster, "10.0.0.1:80")
		o.Ejected(cluster, "10.0.0.1:80")
		if prev != nil {
			o.EndpointRemoved(fmt.Sprintf("default/c%d", i-1), "10.0.0.1:80")
			prev.Release()
		}
		prev = l
	}
	if got, want := o.Handles(), (observe.HandleCounts{Routes: 3, Clusters: 2, Endpoints: 1}); got != want {
		t.Errorf("handles %+v after %d reloads, want %+v", got, reloads, want)
	}
	body := scrape(t, o)
	for name, want := range map[string]int{
		"portcullis_requests_total{":          3, // no-route 404, stable 200, the last rename's code
		"portcullis_request_duration_seconds": 3 * (14 + 1 + 2),
		"portcullis_upstream_requests_total{": 2,
		"portcullis_upstream_errors_total{":   1,
		"portcullis_local_replies_total{":     1,
		"portcullis_upstream_ejections_total": 1,
	} {
		if got := len(seriesOf(body, name)); got != want {
			t.Errorf("%s: %d series after %d reloads, want %d:\n%s", name, got, reloads, want, grep(body, name))
		}
	}
	if v := mustSample(t, body, "portcullis_requests_total", map[string]string{"route": "default/stable#0"}); v != reloads {
		t.Errorf("the stable route counted %v, want %d: it must keep its series through every reload", v, reloads)
	}
}

func TestEndpointSeriesFollowTheirHolders(t *testing.T) {
	o, _ := newObserver(t)
	ep := map[string]string{"cluster": "api", "endpoint": "10.0.0.1:80"}
	o.EndpointAdded("api", "10.0.0.1:80") // the running cluster
	o.EndpointAdded("api", "10.0.0.1:80") // its rebuilt successor, same address
	o.EndpointHealth("api", "10.0.0.1:80", false)
	o.Ejected("api", "10.0.0.1:80")

	o.EndpointRemoved("api", "10.0.0.1:80") // the old cluster closes
	body := scrape(t, o)
	if v := mustSample(t, body, "portcullis_upstream_endpoint_healthy", ep); v != 0 {
		t.Errorf("health of an endpoint still held = %v, want 0", v)
	}
	if v := mustSample(t, body, "portcullis_upstream_ejections_total", ep); v != 1 {
		t.Errorf("ejections of an endpoint still held = %v, want 1", v)
	}
	o.EndpointRemoved("api", "10.0.0.1:80") // the successor drops it
	body = scrape(t, o)
	for _, name := range []string{"portcullis_upstream_endpoint_healthy", "portcullis_upstream_ejections_total"} {
		if _, ok := sample(t, body, name, ep); ok {
			t.Errorf("%s of a removed endpoint remains", name)
		}
	}
	if n := o.Handles().Endpoints; n != 0 {
		t.Errorf("%d endpoints kept, want 0", n)
	}
}

// fixedResolver answers with the addresses set last.
type fixedResolver struct {
	mu  sync.Mutex
	ips []netip.Addr
}

func (r *fixedResolver) set(ips ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ips = r.ips[:0]
	for _, ip := range ips {
		r.ips = append(r.ips, netip.MustParseAddr(ip))
	}
}

func (r *fixedResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]netip.Addr(nil), r.ips...), nil
}

// A DNS cluster reporting to a real Observer: the ejection series of an address
// that leaves the DNS answer goes, the others' stay until the cluster closes.
func TestDNSRemovalDropsEndpointSeries(t *testing.T) {
	o, _ := newObserver(t)
	r := &fixedResolver{}
	refresh := config.Duration(time.Hour)
	c, err := upstream.New("default/api", config.ClusterSpec{
		DNS:              &config.DNSDiscovery{Name: "api.internal", Port: 80, RefreshInterval: &refresh},
		OutlierDetection: &config.OutlierDetection{Consecutive5xx: 1, MaxEjectionPercent: 100},
	}, upstream.Options{Observer: o, Resolver: r, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.set("10.1.0.1", "10.1.0.2")
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Endpoints() { // eject both: one failure each
		ep, err := c.Pick(nil, netip.Addr{}, nil)
		if err != nil {
			t.Fatalf("pick for %s: %v", s.Addr, err)
		}
		ep.Begin()
		ep.End(upstream.GatewayError)
	}
	ejections := func(addr string) (float64, bool) {
		return sample(t, scrape(t, o), "portcullis_upstream_ejections_total", map[string]string{"cluster": "default/api", "endpoint": addr})
	}
	for _, a := range []string{"10.1.0.1:80", "10.1.0.2:80"} {
		if _, ok := ejections(a); !ok {
			t.Fatalf("no ejection series for %s:\n%s", a, grep(scrape(t, o), "ejections"))
		}
	}
	r.set("10.1.0.1")
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := ejections("10.1.0.2:80"); ok {
		t.Error("10.1.0.2 left the DNS answer but its series remains")
	}
	if _, ok := ejections("10.1.0.1:80"); !ok {
		t.Error("10.1.0.1 is still in the cluster but lost its series")
	}
	c.Close()
	if _, ok := ejections("10.1.0.1:80"); ok {
		t.Error("the cluster closed but its endpoint's series remains")
	}
}
