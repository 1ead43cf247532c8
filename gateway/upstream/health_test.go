package upstream_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/upstream"
)

// fastChecks is a health check that settles in tens of milliseconds.
func fastChecks(path string) *config.HealthCheck {
	return &config.HealthCheck{
		Path:               path,
		Interval:           dur(10 * time.Millisecond),
		Timeout:            dur(5 * time.Second),
		HealthyThreshold:   2,
		UnhealthyThreshold: 2,
	}
}

// deadAddr returns a 127.0.0.1 address where nothing listens.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// The built-in probe against a real server: endpoints start healthy, a refused
// port and a 503 turn unhealthy, and a 200 brings the endpoint back.
func TestHealthCheckFlips(t *testing.T) {
	var code atomic.Int32
	code.Store(http.StatusOK)
	var probes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.UserAgent() != "portcullis-health-check" {
			t.Errorf("probe %s with User-Agent %q", r.URL.Path, r.UserAgent())
		}
		probes.Add(1)
		w.WriteHeader(int(code.Load()))
	}))
	defer srv.Close()
	live, dead := srv.Listener.Addr().String(), deadAddr(t)

	spec := static([]string{live, dead})
	spec.HealthCheck = fastChecks("/healthz")
	obs := &observer{}
	c := newCluster(t, spec, upstream.Options{Observer: obs})
	for _, s := range c.Endpoints() {
		if !s.Healthy {
			t.Fatalf("%s unhealthy before any check", s.Addr)
		}
	}
	c.Start()

	eventually(t, "the refused port to turn unhealthy", func() bool { return !status(c, dead).Healthy })
	if !status(c, live).Healthy {
		t.Fatal("the live endpoint turned unhealthy while answering 200")
	}
	for range 50 {
		if ep := pick(t, c, nil); ep.Addr != live {
			t.Fatalf("picked unhealthy %s", ep.Addr)
		}
	}

	code.Store(http.StatusServiceUnavailable)
	eventually(t, "503 to turn the live endpoint unhealthy", func() bool { return !status(c, live).Healthy })
	if _, err := c.Pick(nil, netip.Addr{}, nil); !errors.Is(err, upstream.ErrNoHealthyEndpoint) {
		t.Fatalf("Pick with every endpoint unhealthy: %v, want ErrNoHealthyEndpoint", err)
	}

	code.Store(http.StatusOK)
	eventually(t, "200 to bring the endpoint back", func() bool { return status(c, live).Healthy })
	if ep := pick(t, c, nil); ep.Addr != live {
		t.Fatalf("picked %s, want %s", ep.Addr, live)
	}

	health, _, _ := obs.snapshot()
	want := []string{dead + "=false", live + "=false", live + "=true"}
	if !slices.Equal(health, want) {
		t.Fatalf("observer saw %v, want %v", health, want)
	}
	if probes.Load() < 4 {
		t.Fatalf("%d probes reached the server", probes.Load())
	}
}

func TestHealthCheckVerdicts(t *testing.T) {
	tests := []struct {
		name     string
		expected []int
		probe    func(ctx context.Context) (int, error)
		healthy  bool
	}{
		{"200 in default range", nil, func(context.Context) (int, error) { return 200, nil }, true},
		{"302 in default range", nil, func(context.Context) (int, error) { return 302, nil }, true},
		{"404 outside default range", nil, func(context.Context) (int, error) { return 404, nil }, false},
		{"200 not in expected list", []int{204}, func(context.Context) (int, error) { return 200, nil }, false},
		{"204 in expected list", []int{204}, func(context.Context) (int, error) { return 204, nil }, true},
		{"error", nil, func(context.Context) (int, error) { return 0, errBoom }, false},
		{"timeout", nil, func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			spec := static(addrs(1))
			spec.HealthCheck = fastChecks("/ready")
			spec.HealthCheck.Timeout = dur(20 * time.Millisecond)
			spec.HealthCheck.ExpectedStatuses = tt.expected
			c := newCluster(t, spec, upstream.Options{
				Probe: func(ctx context.Context, ep *upstream.Endpoint, path string) (int, error) {
					if path != "/ready" || ep.Addr != "10.0.0.1:80" {
						t.Errorf("probe of %s%s", ep.Addr, path)
					}
					calls.Add(1)
					return tt.probe(ctx)
				},
			})
			c.Start()
			if tt.healthy {
				eventually(t, "three probes", func() bool { return calls.Load() >= 3 })
				if !c.Endpoints()[0].Healthy {
					t.Fatal("unhealthy, want healthy")
				}
			} else {
				eventually(t, "the endpoint to turn unhealthy", func() bool { return !c.Endpoints()[0].Healthy })
			}
		})
	}
}

// Close stops the checkers; the probe context is cancelled, not left to time out.
func TestCloseStopsHealthChecks(t *testing.T) {
	started := make(chan struct{}, 1)
	spec := static(addrs(1))
	spec.HealthCheck = fastChecks("/")
	spec.HealthCheck.Timeout = dur(time.Hour)
	c, err := upstream.New("test", spec, upstream.Options{
		Logger: quiet,
		Probe: func(ctx context.Context, _ *upstream.Endpoint, _ string) (int, error) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return 0, ctx.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	<-started
	done := make(chan struct{})
	go func() { c.Close(); c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a probe was in flight")
	}
	if !c.Endpoints()[0].Healthy {
		t.Fatal("a probe cancelled by Close counted as a failure")
	}
}
