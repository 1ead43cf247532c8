package upstream_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/upstream"
)

var benchPolicies = []string{config.LBRoundRobin, config.LBLeastRequest, config.LBRandom, config.LBRingHash, config.LBMaglev}

// benchCluster has n endpoints with weights 1, 2, 3, 1, ... and a request with a
// hash key.
func benchCluster(b *testing.B, policy string, n int) (*upstream.Cluster, *http.Request) {
	weights := make([]int, n)
	for i := range weights {
		weights[i] = i%3 + 1
	}
	spec := static(addrs(n), weights...)
	spec.LoadBalancer = config.LoadBalancer{Policy: policy, Hash: &config.HashKey{Header: "x-user"}}
	c := newCluster(b, spec, upstream.Options{})
	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	req.Header.Set("X-User", "user-12345")
	return c, req
}

// BenchmarkPick is the cost of one Pick on one goroutine.
func BenchmarkPick(b *testing.B) {
	for _, policy := range benchPolicies {
		for _, n := range []int{3, 100} {
			b.Run(fmt.Sprintf("%s/%d", policy, n), func(b *testing.B) {
				c, req := benchCluster(b, policy, n)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Pick(req, netip.Addr{}, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkPickParallel is Pick plus Begin/End from every P at once, which is
// what the proxy does: it shows contention on the shared counters.
func BenchmarkPickParallel(b *testing.B) {
	for _, policy := range benchPolicies {
		for _, n := range []int{3, 100} {
			b.Run(fmt.Sprintf("%s/%d", policy, n), func(b *testing.B) {
				c, req := benchCluster(b, policy, n)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						ep, err := c.Pick(req, netip.Addr{}, nil)
						if err != nil {
							b.Fatal(err)
						}
						ep.Begin()
						ep.End(upstream.Success)
					}
				})
			})
		}
	}
}

// BenchmarkPickSticky measures the sticky-cookie path: parse and verify the
// cookie (HMAC-SHA256) on every request.
func BenchmarkPickSticky(b *testing.B) {
	spec := static(addrs(3))
	spec.LoadBalancer.StickyCookie = &config.StickyCookie{Name: "pc-route"}
	c := newCluster(b, spec, upstream.Options{})
	ep, _ := c.Pick(nil, netip.Addr{}, nil)
	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	req.AddCookie(c.StickyCookie(ep, req))
	b.ReportAllocs()
	for b.Loop() {
		if got, _ := c.Pick(req, netip.Addr{}, nil); got != ep {
			b.Fatal("cookie not honoured")
		}
	}
}

func BenchmarkAcquireRequest(b *testing.B) {
	c := newCluster(b, static(addrs(3)), upstream.Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			release, ok := c.AcquireRequest()
			if ok {
				release()
			}
		}
	})
}
