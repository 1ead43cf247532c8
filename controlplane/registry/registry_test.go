package registry_test

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/registry"
	"github.com/portcullis/portcullis/gateway/config"
)

// A sidecar registers its app and renews it; another proxy of the namespace and
// an authorized operator look it up; the push server's Endpoints sees only what
// is healthy; Deregister takes it out at once.
func TestRegisterLookupDeregister(t *testing.T) {
	t.Parallel()
	metrics := prometheus.NewRegistry()
	authz := newAllow("read shop/cart")
	reg := newRegistry(t, newStore(t), registry.Options{AllowLoopback: true, Authorize: authz.Authorize, Registerer: metrics})
	client := serve(t, reg)
	up, down := newApp(t), newApp(t)

	before := time.Now()
	changed := reg.Changed()
	got, err := client.Register(as(t, sidecar("shop", "cart")), &cpv1.RegisterRequest{
		Namespace: "shop", Service: "cart", Address: up.addr(), Weight: 3, Healthy: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetRegisteredBy() != "proxy:shop-cart" || got.GetWeight() != 3 || got.GetAddress() != up.addr() {
		t.Errorf("Register answered %v", got)
	}
	if exp := time.Unix(got.GetExpiresUnix(), 0); exp.Before(before.Add(29*time.Second)) || exp.After(time.Now().Add(31*time.Second)) {
		t.Errorf("expires at %v, want the default TTL of 30s from now", exp)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed did not fire after a healthy endpoint was registered")
	}
	eps, known := reg.Endpoints("shop", "cart")
	if !known || !slices.Equal(eps, []config.Endpoint{{Address: up.addr(), Weight: 3}}) {
		t.Fatalf("Endpoints = %v, %v; want the registered endpoint with weight 3", eps, known)
	}

	// The sidecar reports a second instance as not healthy: registered, not served.
	if _, err := client.Register(as(t, sidecar("shop", "cart")), &cpv1.RegisterRequest{
		Namespace: "shop", Service: "cart", Address: down.addr(), Healthy: false,
	}); err != nil {
		t.Fatal(err)
	}
	lookup := func(who string, includeUnhealthy bool) []string {
		t.Helper()
		p := sidecar("shop", "web") // another proxy of the namespace may read
		if who == "operator" {
			p = operator
		}
		resp, err := client.Lookup(as(t, p), &cpv1.LookupRequest{Namespace: "shop", Service: "cart", IncludeUnhealthy: includeUnhealthy})
		if err != nil {
			t.Fatalf("Lookup by %s: %v", who, err)
		}
		var out []string
		for _, e := range resp.GetEndpoints() {
			out = append(out, e.GetAddress()+healthWord(e.GetHealthy()))
		}
		return out
	}
	// An unhealthy registration changes no healthy set, so Changed stays quiet:
	// poll until the view has it.
	eventually(t, 5*time.Second, "both registrations in memory", func() bool { return len(lookup("proxy", true)) == 2 })
	if want := sortedPair(up.addr()+" healthy", down.addr()+" unhealthy"); !slices.Equal(lookup("proxy", true), want) {
		t.Errorf("Lookup with unhealthy = %q, want %q", lookup("proxy", true), want)
	}
	if got, want := lookup("operator", false), []string{up.addr() + " healthy"}; !slices.Equal(got, want) {
		t.Errorf("operator Lookup = %q, want %q", got, want)
	}
	if asked := *authz.asked.Load(); !slices.Contains(asked, "read shop/cart") {
		t.Errorf("Authorize was asked %q, want \"read shop/cart\"", asked)
	}
	if eps, _ := reg.Endpoints("shop", "cart"); len(eps) != 1 {
		t.Errorf("Endpoints = %v; the unhealthy registration must not be served", eps)
	}
	if eps, known := reg.Endpoints("shop", "nobody"); known || eps != nil {
		t.Errorf("Endpoints of an unknown service = %v, %v", eps, known)
	}
	if n := metricValue(t, metrics, "portcullis_registry_endpoints", map[string]string{"namespace": "shop", "service": "cart"}); n != 2 {
		t.Errorf("registered endpoints gauge = %v, want 2", n)
	}
	if n := metricValue(t, metrics, "portcullis_registry_healthy_endpoints", map[string]string{"namespace": "shop", "service": "cart"}); n != 1 {
		t.Errorf("healthy endpoints gauge = %v, want 1", n)
	}

	// A renewal (the heartbeat) may change the weight.
	if _, err := client.Register(as(t, sidecar("shop", "cart")), &cpv1.RegisterRequest{
		Namespace: "shop", Service: "cart", Address: up.addr(), Weight: 5, Healthy: true,
	}); err != nil {
		t.Fatal(err)
	}
	waitWeight(t, reg, "shop", "cart", up.addr(), 5)

	if _, err := client.Deregister(as(t, sidecar("shop", "cart")), &cpv1.DeregisterRequest{Namespace: "shop", Service: "cart", Address: up.addr()}); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, reg, "shop", "cart", 5*time.Second)
	if _, known := reg.Endpoints("shop", "cart"); !known {
		t.Error("the service still has an (unhealthy) registration and must stay known")
	}
	_, err = client.Deregister(as(t, sidecar("shop", "cart")), &cpv1.DeregisterRequest{Namespace: "shop", Service: "cart", Address: up.addr()})
	wantCode(t, err, codes.NotFound, "deregistering twice")
}

func healthWord(h bool) string {
	if h {
		return " healthy"
	}
	return " unhealthy"
}

func sortedPair(a, b string) []string {
	out := []string{a, b}
	slices.Sort(out)
	return out
}

func waitWeight(t *testing.T, reg *registry.Registry, ns, svc, addr string, weight int) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		changed := reg.Changed()
		eps, _ := reg.Endpoints(ns, svc)
		if slices.Contains(eps, config.Endpoint{Address: addr, Weight: weight}) {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%s/%s: endpoints %v, want %s with weight %d", ns, svc, eps, addr, weight)
		}
	}
}

// A registration that is not renewed disappears when its TTL runs out; one
// that is renewed stays.
func TestRegistrationLapsesWithoutHeartbeat(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t, newStore(t), registry.Options{AllowLoopback: true})
	client := serve(t, reg)
	lapsing, renewed := newApp(t), newApp(t)
	register := func(a *app) {
		t.Helper()
		if _, err := client.Register(as(t, sidecar("shop", "cart")), &cpv1.RegisterRequest{
			Namespace: "shop", Service: "cart", Address: a.addr(), Healthy: true, TtlSeconds: 5,
		}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	register(lapsing)
	register(renewed)
	waitEndpoints(t, reg, "shop", "cart", 5*time.Second, sortedPair(lapsing.addr(), renewed.addr())...)

	// Renew one every second until the other has lapsed (bounded: 5s TTL, the
	// store's expiry check, and margin).
	heartbeat := time.NewTicker(time.Second)
	defer heartbeat.Stop()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		changed := reg.Changed()
		eps, _ := reg.Endpoints("shop", "cart")
		if len(eps) == 1 {
			if eps[0].Address != renewed.addr() {
				t.Fatalf("the renewed registration lapsed, the other stayed: %v", eps)
			}
			break
		}
		select {
		case <-changed:
		case <-heartbeat.C:
			register(renewed)
		case <-deadline.C:
			t.Fatalf("the unrenewed registration is still there after 15s: %v", eps)
		}
	}
	if lapsed := time.Since(start); lapsed < 4*time.Second {
		t.Errorf("the registration lapsed after %v, before its 5s TTL", lapsed)
	}
}
