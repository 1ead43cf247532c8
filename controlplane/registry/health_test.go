package registry_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/registry"
)

// The leader probes an endpoint registered with a health-check path: it takes
// traffic after its first good answer, leaves load balancing after
// UnhealthyThreshold failures in a row and comes back after HealthyThreshold
// good answers. A second replica, which runs no checks, agrees through the
// store, and Changed fires on it.
func TestHealthChecksTakeAnEndpointOutAndBack(t *testing.T) {
	t.Parallel()
	const (
		interval  = 150 * time.Millisecond
		threshold = 2
	)
	prefix := uniquePrefix(t)
	metrics := prometheus.NewRegistry()
	opts := registry.Options{
		AllowLoopback: true, Authorize: newAllow("write ops/api").Authorize,
		HealthInterval: interval, HealthTimeout: interval, UnhealthyThreshold: threshold, HealthyThreshold: threshold,
	}
	leaderOpts := opts
	leaderOpts.Registerer = metrics
	leader := newRegistry(t, openStore(t, prefix), leaderOpts)
	// Another replica: its own client of the same keys.
	follower := newRegistry(t, openStore(t, prefix), opts)
	client := serve(t, leader)
	a := newApp(t)

	if _, err := client.Register(as(t, operator), &cpv1.RegisterRequest{
		Namespace: "ops", Service: "api", Address: a.addr(), HealthCheckPath: "/healthz",
		Healthy: true, // ignored: the control plane checks
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the registration reaches the follower", func() bool {
		_, known := follower.Endpoints("ops", "api")
		return known
	})
	if eps, _ := follower.Endpoints("ops", "api"); len(eps) != 0 {
		t.Fatalf("an endpoint nobody has probed yet is served: %v", eps)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- leader.RunHealthChecks(ctx) }()
	var stopOnce sync.Once
	stopChecks := func() { // as when leadership is lost
		stopOnce.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("RunHealthChecks: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("RunHealthChecks did not return after its ctx ended")
			}
		})
	}
	t.Cleanup(stopChecks)
	waitEndpoints(t, follower, "ops", "api", 5*time.Second, a.addr())
	waitEndpoints(t, leader, "ops", "api", 5*time.Second, a.addr())
	if err := leader.RunHealthChecks(t.Context()); err == nil {
		t.Error("a second RunHealthChecks on the same registry was accepted")
	}

	// The app starts failing: out within about interval x threshold.
	changed := follower.Changed()
	failingFrom := a.probes.Load()
	a.status.Store(http.StatusServiceUnavailable)
	took := waitEndpoints(t, follower, "ops", "api", 5*time.Second)
	if probes := a.probes.Load() - failingFrom; probes < threshold {
		t.Errorf("taken out after %d failed probes, want at least %d", probes, threshold)
	}
	if limit := interval*(threshold+2) + time.Second; took > limit {
		t.Errorf("taken out after %v, want within %v", took, limit)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed did not fire when the endpoint left")
	}
	t.Logf("unhealthy after %v", took)

	// It recovers: back after HealthyThreshold good answers.
	recoveringFrom := a.probes.Load()
	a.status.Store(http.StatusOK)
	took = waitEndpoints(t, follower, "ops", "api", 5*time.Second, a.addr())
	if probes := a.probes.Load() - recoveringFrom; probes < threshold {
		t.Errorf("back after %d good probes, want at least %d", probes, threshold)
	}
	t.Logf("healthy again after %v", took)

	// A renewal (same path) keeps the verdict; a registration with another path
	// is a new one and waits for its own first check, which nobody runs now.
	renew := func(path string) *cpv1.RegistryEndpoint {
		t.Helper()
		got, err := client.Register(as(t, operator), &cpv1.RegisterRequest{Namespace: "ops", Service: "api", Address: a.addr(), HealthCheckPath: path})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := renew("/healthz"); !got.GetHealthy() {
		t.Error("a renewal lost the endpoint's verdict")
	}
	stopChecks()
	if got := renew("/healthz?deep=1"); got.GetHealthy() {
		t.Error("a registration with a new health-check path kept the old verdict")
	}
	waitEndpoints(t, follower, "ops", "api", 5*time.Second)

	labels := func(result string) map[string]string {
		return map[string]string{"namespace": "ops", "service": "api", "result": result}
	}
	if metricValue(t, metrics, "portcullis_registry_health_checks_total", labels("healthy")) < 1+threshold ||
		metricValue(t, metrics, "portcullis_registry_health_checks_total", labels("unhealthy")) < threshold {
		t.Errorf("health-check counters: healthy %v, unhealthy %v",
			metricValue(t, metrics, "portcullis_registry_health_checks_total", labels("healthy")),
			metricValue(t, metrics, "portcullis_registry_health_checks_total", labels("unhealthy")))
	}
}
