package upstream_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/upstream"
)

func dnsSpec(interval time.Duration) config.ClusterSpec {
	return config.ClusterSpec{DNS: &config.DNSDiscovery{Name: "svc.internal", Port: 8080, RefreshInterval: dur(interval)}}
}

func addrsOf(c *upstream.Cluster) []string {
	var out []string
	for _, s := range c.Endpoints() {
		out = append(out, s.Addr)
	}
	return out
}

func TestDNSRefreshKeepsEndpointIdentity(t *testing.T) {
	r, ps := &resolver{}, &pools{}
	spec := dnsSpec(time.Hour)
	spec.OutlierDetection = &config.OutlierDetection{Consecutive5xx: 1, MaxEjectionPercent: 100}
	c := newCluster(t, spec, upstream.Options{Resolver: r, NewPool: ps.New})
	ctx := context.Background()

	steps := []struct {
		name    string
		ips     []string
		want    []string
		removed []string
	}{
		{"first answer, duplicates and v4-in-v6 folded", []string{"10.2.0.2", "10.2.0.1", "::ffff:10.2.0.1", "10.2.0.2"},
			[]string{"10.2.0.1:8080", "10.2.0.2:8080"}, nil},
		{"one added", []string{"10.2.0.1", "10.2.0.2", "10.2.0.3"},
			[]string{"10.2.0.1:8080", "10.2.0.2:8080", "10.2.0.3:8080"}, nil},
		{"one removed", []string{"10.2.0.3", "10.2.0.1"},
			[]string{"10.2.0.1:8080", "10.2.0.3:8080"}, []string{"10.2.0.2:8080"}},
		{"IPv6", []string{"10.2.0.1", "2001:db8::1"},
			[]string{"10.2.0.1:8080", "[2001:db8::1]:8080"}, []string{"10.2.0.2:8080", "10.2.0.3:8080"}},
	}
	var kept *upstream.Endpoint // 10.2.0.1, carried through every step
	for i, st := range steps {
		r.set(st.ips...)
		if err := c.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if got := addrsOf(c); !slices.Equal(got, st.want) {
			t.Fatalf("%s: endpoints %v, want %v", st.name, got, st.want)
		}
		eps := endpoints(t, c)
		if i == 0 {
			kept = eps["10.2.0.1:8080"]
			kept.Begin() // state that must survive: a request in flight...
			fail(eps["10.2.0.2:8080"], 1)
			if !status(c, "10.2.0.2:8080").Ejected {
				t.Fatal("10.2.0.2 not ejected")
			}
		} else if eps["10.2.0.1:8080"] != kept {
			t.Fatalf("%s: 10.2.0.1 is a new *Endpoint; its state and pool were lost", st.name)
		}
		if n := kept.InFlight(); n != 1 {
			t.Fatalf("%s: in-flight count %d, want 1", st.name, n)
		}
		if i == 1 && !status(c, "10.2.0.2:8080").Ejected {
			t.Fatalf("%s: 10.2.0.2 lost its ejection", st.name)
		}
		for _, a := range st.want {
			if n := len(ps.made(a)); n != 1 {
				t.Fatalf("%s: %d pools made for %s, want 1", st.name, n, a)
			}
			if p := ps.made(a)[0]; p.closes() != 0 {
				t.Fatalf("%s: pool of remaining %s closed", st.name, a)
			}
		}
		for _, a := range st.removed {
			if p := ps.made(a)[0]; p.closes() != 1 {
				t.Fatalf("%s: pool of removed %s closed %d times, want 1", st.name, a, p.closes())
			}
		}
	}

	// A failed lookup keeps what the cluster has.
	r.fail(errBoom)
	if err := c.Refresh(ctx); err == nil {
		t.Fatal("Refresh hid the resolver's error")
	}
	if got := addrsOf(c); len(got) != 2 {
		t.Fatalf("after a failed lookup: %v, want the 2 endpoints kept", got)
	}

	c.Close()
	c.Close()
	for _, a := range []string{"10.2.0.1:8080", "[2001:db8::1]:8080"} {
		if n := ps.made(a)[0].closes(); n != 1 {
			t.Fatalf("after Close: pool of %s closed %d times, want 1", a, n)
		}
	}
}

// Start refreshes in the background, and endpoints it adds get health checks.
func TestDNSLoopAndHealthChecks(t *testing.T) {
	r := &resolver{}
	r.set("10.3.0.1")
	var mu sync.Mutex
	probed := map[string]int{}
	spec := dnsSpec(10 * time.Millisecond)
	spec.HealthCheck = fastChecks("/healthz")
	c := newCluster(t, spec, upstream.Options{
		Resolver: r,
		Probe: func(ctx context.Context, ep *upstream.Endpoint, path string) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			probed[ep.Addr]++
			if ep.Addr == "10.3.0.2:8080" {
				return 500, nil
			}
			return 200, nil
		},
	})
	c.Start()
	eventually(t, "the first lookup", func() bool { return len(c.Endpoints()) == 1 })
	r.set("10.3.0.1", "10.3.0.2")
	eventually(t, "the added endpoint", func() bool { return len(c.Endpoints()) == 2 })
	eventually(t, "the added endpoint to be checked and found unhealthy", func() bool {
		return !status(c, "10.3.0.2:8080").Healthy
	})
	if !status(c, "10.3.0.1:8080").Healthy {
		t.Fatal("10.3.0.1 unhealthy")
	}
	calls := r.count()
	eventually(t, "further refreshes", func() bool { return r.count() >= calls+2 })
	c.Close()
	mu.Lock()
	defer mu.Unlock()
	if probed["10.3.0.1:8080"] == 0 {
		t.Fatal("the first endpoint was never probed")
	}
}
