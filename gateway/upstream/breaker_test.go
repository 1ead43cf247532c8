package upstream_test

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/upstream"
)

func TestBreakerLimits(t *testing.T) {
	acquire := map[string]func(*upstream.Cluster) (func(), bool){
		upstream.LimitRequests:    (*upstream.Cluster).AcquireRequest,
		upstream.LimitRetries:     (*upstream.Cluster).AcquireRetry,
		upstream.LimitConnections: (*upstream.Cluster).AcquireConn,
		upstream.LimitPending:     (*upstream.Cluster).AcquirePending,
	}
	tests := []struct {
		name  string
		cb    config.CircuitBreaker
		limit string
		want  int
	}{
		{"maxRequests", config.CircuitBreaker{MaxRequests: 2}, upstream.LimitRequests, 2},
		{"maxRetries", config.CircuitBreaker{MaxRetries: 1}, upstream.LimitRetries, 1},
		{"maxConnections", config.CircuitBreaker{MaxConnections: 5}, upstream.LimitConnections, 5},
		{"maxPendingRequests", config.CircuitBreaker{MaxPendingRequests: 3}, upstream.LimitPending, 3},
		{"default maxRetries", config.CircuitBreaker{}, upstream.LimitRetries, 3},
		{"default maxRequests", config.CircuitBreaker{}, upstream.LimitRequests, 1024},
		{"default maxConnections", config.CircuitBreaker{}, upstream.LimitConnections, 1024},
		{"default maxPendingRequests", config.CircuitBreaker{}, upstream.LimitPending, 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := &observer{}
			spec := static(addrs(1))
			spec.CircuitBreaker = tt.cb
			c := newCluster(t, spec, upstream.Options{Observer: obs})
			acq := acquire[tt.limit]
			var releases []func()
			for i := range tt.want {
				release, ok := acq(c)
				if !ok {
					t.Fatalf("acquire %d of %d refused", i+1, tt.want)
				}
				releases = append(releases, release)
			}
			release, ok := acq(c)
			if ok {
				t.Fatalf("acquire %d allowed beyond the limit of %d", tt.want+1, tt.want)
			}
			release() // a refused acquire's release is a harmless no-op
			if _, _, over := obs.snapshot(); !slices.Equal(over, []string{tt.limit}) {
				t.Fatalf("observer saw overflows %v, want [%s]", over, tt.limit)
			}
			// The other counters are independent.
			for name, other := range acquire {
				if name == tt.limit {
					continue
				}
				if r, ok := other(c); !ok {
					t.Fatalf("%s refused while only %s is full", name, tt.limit)
				} else {
					r()
				}
			}
			releases[0]()
			if r, ok := acq(c); !ok {
				t.Fatal("refused after a release")
			} else {
				releases[0] = r
			}
			for _, r := range releases {
				r()
			}
			if b := c.Breaker(); b.Requests+b.Retries+b.Connections+b.Pending != 0 {
				t.Fatalf("counters not back at zero: %+v", b)
			}
		})
	}
}

// Under contention the limit holds at every moment, not just on average.
func TestBreakerConcurrent(t *testing.T) {
	const limit = 4
	spec := static(addrs(1))
	spec.CircuitBreaker.MaxRequests = limit
	c := newCluster(t, spec, upstream.Options{})
	var active, peak, refused atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				release, ok := c.AcquireRequest()
				if !ok {
					refused.Add(1)
					continue
				}
				n := active.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				active.Add(-1)
				release()
			}
		})
	}
	wg.Wait()
	if peak.Load() > limit {
		t.Fatalf("%d requests active at once, limit %d", peak.Load(), limit)
	}
	if c.Breaker().Requests != 0 {
		t.Fatalf("%d requests still counted", c.Breaker().Requests)
	}
}
