package upstream_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/upstream"
)

var hashPolicies = []string{config.LBRingHash, config.LBMaglev}

func keyed(header, value string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	if value != "" {
		req.Header.Set(header, value)
	}
	return req
}

// mapping returns the endpoint address each of n keys goes to.
func mapping(t *testing.T, c *upstream.Cluster, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = pick(t, c, keyed("X-User", fmt.Sprintf("user-%d", i))).Addr
	}
	return out
}

func TestHashKeepsKeyOnEndpoint(t *testing.T) {
	for _, policy := range hashPolicies {
		t.Run(policy, func(t *testing.T) {
			as := addrs(10)
			spec := static(as)
			spec.LoadBalancer = config.LoadBalancer{Policy: policy, Hash: &config.HashKey{Header: "x-user"}}
			c := newCluster(t, spec, upstream.Options{})
			first := mapping(t, c, 2000)
			for round := range 3 {
				again := mapping(t, c, 2000)
				for i := range first {
					if again[i] != first[i] {
						t.Fatalf("round %d: key %d went to %s, then %s", round, i, first[i], again[i])
					}
				}
			}
			// Another gateway with the same endpoints, listed in another order,
			// must agree: the hashes are not seeded per process or per list.
			rev := make([]string, len(as))
			for i, a := range as {
				rev[len(as)-1-i] = a
			}
			spec2 := static(rev)
			spec2.LoadBalancer = spec.LoadBalancer
			other := mapping(t, newCluster(t, spec2, upstream.Options{}), 2000)
			for i := range first {
				if other[i] != first[i] {
					t.Fatalf("key %d: %s on one cluster, %s on an identical one", i, first[i], other[i])
				}
			}
			// Keys spread over every endpoint: 2000 keys over 10 endpoints.
			per := map[string]int{}
			for _, a := range first {
				per[a]++
			}
			for _, a := range as {
				if per[a] < 2000/10/2 || per[a] > 2000/10*2 {
					t.Errorf("%s got %d of 2000 keys, want about 200", a, per[a])
				}
			}
		})
	}
}

func TestHashMovesFewKeysWhenEndpointLeaves(t *testing.T) {
	ips := make([]string, 10)
	for i := range ips {
		ips[i] = fmt.Sprintf("10.1.0.%d", i+1)
	}
	const keys = 10000
	for _, policy := range hashPolicies {
		t.Run(policy, func(t *testing.T) {
			r := &resolver{}
			r.set(ips...)
			spec := config.ClusterSpec{
				DNS:          &config.DNSDiscovery{Name: "svc.internal", Port: 8080},
				LoadBalancer: config.LoadBalancer{Policy: policy, Hash: &config.HashKey{Header: "x-user"}},
			}
			c := newCluster(t, spec, upstream.Options{Resolver: r})
			if err := c.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			before := mapping(t, c, keys)

			gone := "10.1.0.4:8080"
			r.set(append(append([]string(nil), ips[:3]...), ips[4:]...)...)
			if err := c.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			after := mapping(t, c, keys)
			var had, strays int
			for i := range before {
				switch {
				case after[i] == gone:
					t.Fatalf("key %d still goes to the removed endpoint", i)
				case before[i] == gone:
					had++
				case after[i] != before[i]:
					strays++ // a key that did not have to move
				}
			}
			// The removed endpoint's tenth must move; of the rest, a ring moves
			// none and Maglev a few (its tables are only nearly stable).
			if had < keys/20 || had > keys/5 {
				t.Errorf("removed endpoint had %d of %d keys, want about a tenth", had, keys)
			}
			t.Logf("%d keys had to move, %d others moved", had, strays)
			maxStrays := 0
			if policy == config.LBMaglev {
				maxStrays = keys * 3 / 100
			}
			if strays > maxStrays {
				t.Errorf("%d keys moved between endpoints that stayed, want at most %d", strays, maxStrays)
			}

			// When it comes back, every key goes home.
			r.set(ips...)
			if err := c.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			back := mapping(t, c, keys)
			for i := range before {
				if back[i] != before[i] {
					t.Fatalf("key %d: %s before, %s after the endpoint returned", i, before[i], back[i])
				}
			}
		})
	}
}

func TestHashKeys(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.7")
	tests := []struct {
		name      string
		key       config.HashKey
		same, alt func() (*http.Request, netip.Addr)
	}{
		{
			name: "header",
			key:  config.HashKey{Header: "x-tenant"},
			same: func() (*http.Request, netip.Addr) { return keyed("X-Tenant", "acme"), netip.Addr{} },
		},
		{
			name: "cookie",
			key:  config.HashKey{Cookie: "session"},
			same: func() (*http.Request, netip.Addr) {
				r := keyed("Cookie", "a=1; session=abc123; b=2")
				return r, netip.Addr{}
			},
		},
		{
			name: "source IP, v4 and v4-in-v6 alike",
			key:  config.HashKey{SourceIP: true},
			same: func() (*http.Request, netip.Addr) { return keyed("", ""), v4 },
			alt: func() (*http.Request, netip.Addr) {
				return keyed("", ""), netip.AddrFrom16(v4.As16()) // ::ffff:192.0.2.7
			},
		},
	}
	for _, tt := range tests {
		for _, policy := range hashPolicies {
			t.Run(tt.name+"/"+policy, func(t *testing.T) {
				spec := static(addrs(20))
				spec.LoadBalancer = config.LoadBalancer{Policy: policy, Hash: &tt.key}
				c := newCluster(t, spec, upstream.Options{})
				req, ip := tt.same()
				want, err := c.Pick(req, ip, nil)
				if err != nil {
					t.Fatal(err)
				}
				for range 100 {
					req, ip := tt.same()
					if tt.alt != nil && ip.IsValid() {
						req, ip = tt.alt()
					}
					if got, _ := c.Pick(req, ip, nil); got != want {
						t.Fatalf("same key: %s then %s", want.Addr, got.Addr)
					}
				}
				// Without the key, requests are spread (random fallback).
				seen := map[*upstream.Endpoint]bool{}
				for range 200 {
					ep, _ := c.Pick(keyed("", ""), netip.Addr{}, nil)
					seen[ep] = true
				}
				if len(seen) < 10 {
					t.Fatalf("requests without a key reached %d of 20 endpoints, want a spread", len(seen))
				}
			})
		}
	}
}

func TestHashHonoursWeights(t *testing.T) {
	for _, policy := range hashPolicies {
		t.Run(policy, func(t *testing.T) {
			as := addrs(2)
			spec := static(as, 1, 3)
			spec.LoadBalancer = config.LoadBalancer{Policy: policy, Hash: &config.HashKey{Header: "x-user"}}
			c := newCluster(t, spec, upstream.Options{})
			per := map[string]int{}
			for _, a := range mapping(t, c, 8000) {
				per[a]++
			}
			if share := float64(per[as[1]]) / 8000; share < 0.70 || share > 0.80 {
				t.Fatalf("weight 3 of 4 got %.3f of the keys, want 0.75 ± 0.05", share)
			}
		})
	}
}
