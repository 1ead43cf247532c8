package upstream_test

import (
	"errors"
	"math"
	"net/http"
	"net/netip"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/upstream"
)

func TestWeightedDistribution(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i%5 + 1
	}
	tests := []struct {
		name    string
		policy  string
		weights []int
		picks   int
		tol     float64 // largest allowed |share - weight share|
	}{
		// Round robin is exact over whole cycles of the schedule.
		{"roundRobin equal", config.LBRoundRobin, []int{1, 1, 1}, 300, 0},
		{"roundRobin weighted", config.LBRoundRobin, []int{1, 2, 3}, 600, 0},
		{"roundRobin default weight", config.LBRoundRobin, []int{0, 2}, 300, 0},
		{"roundRobin 100", config.LBRoundRobin, hundred, 300 * 100, 0},
		{"random weighted", config.LBRandom, []int{1, 2, 3}, 60000, 0.01},
		{"random equal", config.LBRandom, []int{1, 1, 1, 1}, 60000, 0.01},
		{"random 100", config.LBRandom, hundred, 100000, 0.002},
		{"random uneven", config.LBRandom, []int{1, 1000}, 100000, 0.002},
		// Idle endpoints tie, and the first (weighted) draw wins the tie.
		{"leastRequest weighted idle", config.LBLeastRequest, []int{1, 2, 3}, 60000, 0.01},
		{"leastRequest 100 idle", config.LBLeastRequest, hundred, 100000, 0.002},
		// Hash policies without a key fall back to weighted random.
		{"ringHash no key", config.LBRingHash, []int{1, 2, 3}, 60000, 0.01},
		{"maglev no key", config.LBMaglev, []int{1, 2, 3}, 60000, 0.01},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := addrs(len(tt.weights))
			spec := static(as, tt.weights...)
			spec.LoadBalancer.Policy = tt.policy
			if tt.policy == config.LBRingHash || tt.policy == config.LBMaglev {
				spec.LoadBalancer.Hash = &config.HashKey{Header: "x-user"}
			}
			c := newCluster(t, spec, upstream.Options{Rand: seeded(1)})
			got := counts(t, c, tt.picks)
			var sum int
			for _, w := range tt.weights {
				sum += max(w, 1)
			}
			for i, a := range as {
				want := float64(max(tt.weights[i], 1)) / float64(sum)
				share := float64(got[a]) / float64(tt.picks)
				if math.Abs(share-want) > tt.tol+1e-9 {
					t.Errorf("%s (weight %d): share %.4f, want %.4f ± %.3f", a, tt.weights[i], share, want, tt.tol)
				}
			}
		})
	}
}

// Smooth round robin spreads a heavy endpoint out instead of sending it runs.
func TestRoundRobinIsSmooth(t *testing.T) {
	as := addrs(3)
	c := newCluster(t, static(as, 1, 1, 3), upstream.Options{})
	run, longest, prev := 0, 0, ""
	for range 50 {
		a := pick(t, c, nil).Addr
		if a == prev {
			run++
		} else {
			run = 1
		}
		prev, longest = a, max(longest, run)
	}
	if longest > 2 {
		t.Fatalf("weights 1,1,3: %d picks of one endpoint in a row, want at most 2", longest)
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	for _, weights := range [][]int{{1, 1, 1}, {5, 1, 1}} {
		as := addrs(3)
		spec := static(as, weights...)
		spec.LoadBalancer.Policy = config.LBLeastRequest
		c := newCluster(t, spec, upstream.Options{Rand: seeded(2)})

		// Load the first endpoint (the heaviest in the second case) with 10
		// requests in flight per unit of weight; the others are idle.
		var busy *upstream.Endpoint
		for busy == nil {
			if ep := pick(t, c, nil); ep.Addr == as[0] {
				busy = ep
			}
		}
		for range 10 * weights[0] {
			busy.Begin()
		}
		got := counts(t, c, 1000)
		if got[as[0]] != 0 {
			t.Errorf("weights %v: busy endpoint picked %d times of 1000, want 0 (two distinct candidates, one always idle)", weights, got[as[0]])
		}
		for range 10 * weights[0] {
			busy.End(upstream.Success)
		}
		if n := busy.InFlight(); n != 0 {
			t.Errorf("in flight after End: %d", n)
		}
		if got := counts(t, c, 3000); got[as[0]] == 0 {
			t.Errorf("weights %v: idle again, but never picked", weights)
		}
	}
}

func TestPickExclude(t *testing.T) {
	for _, policy := range []string{config.LBRoundRobin, config.LBLeastRequest, config.LBRandom, config.LBRingHash, config.LBMaglev} {
		t.Run(policy, func(t *testing.T) {
			spec := static(addrs(3))
			spec.LoadBalancer.Policy = policy
			spec.LoadBalancer.Hash = &config.HashKey{Header: "x-user"}
			c := newCluster(t, spec, upstream.Options{})
			req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
			req.Header.Set("X-User", "alice")
			first, err := c.Pick(req, netip.Addr{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for range 200 {
				ep, err := c.Pick(req, netip.Addr{}, first)
				if err != nil {
					t.Fatal(err)
				}
				if ep == first {
					t.Fatalf("Pick returned the excluded endpoint %s", first.Addr)
				}
			}
		})
	}
	// With one endpoint, excluding it still answers with it: a retry on the same
	// endpoint beats failing the request.
	c := newCluster(t, static(addrs(1)), upstream.Options{})
	only := pick(t, c, nil)
	if ep, err := c.Pick(nil, netip.Addr{}, only); err != nil || ep != only {
		t.Fatalf("Pick(exclude only endpoint) = %v, %v; want the endpoint", ep, err)
	}
}

func TestNoHealthyEndpoint(t *testing.T) {
	// A DNS cluster has no endpoint until its first refresh.
	spec := config.ClusterSpec{DNS: &config.DNSDiscovery{Name: "svc.internal", Port: 80}}
	c := newCluster(t, spec, upstream.Options{Resolver: &resolver{}})
	if _, err := c.Pick(nil, netip.Addr{}, nil); !errors.Is(err, upstream.ErrNoHealthyEndpoint) {
		t.Fatalf("Pick on an empty cluster: %v, want ErrNoHealthyEndpoint", err)
	}
}

// Pick must not allocate for the policies that need no key.
func TestPickDoesNotAllocate(t *testing.T) {
	for _, policy := range []string{config.LBRoundRobin, config.LBLeastRequest, config.LBRandom, config.LBRingHash, config.LBMaglev} {
		spec := static(addrs(10), 1, 2, 3)
		spec.LoadBalancer.Policy = policy
		spec.LoadBalancer.Hash = &config.HashKey{Header: "x-user"}
		c := newCluster(t, spec, upstream.Options{})
		req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
		req.Header.Set("X-User", "alice")
		allocs := testing.AllocsPerRun(1000, func() {
			ep, err := c.Pick(req, netip.Addr{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ep.Begin()
			ep.End(upstream.Success)
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per Pick, want 0", policy, allocs)
		}
	}
}
