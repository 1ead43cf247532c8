package registry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/registry"
)

// A proxy acts for the one service its credential is bound to, in its own
// namespace; it may read its namespace, nothing else.
func TestProxyMayOnlyActForItsOwnService(t *testing.T) {
	t.Parallel()
	metrics := prometheus.NewRegistry()
	reg := newRegistry(t, newStore(t), registry.Options{AllowLoopback: true, Registerer: metrics})
	client := serve(t, reg)
	addr := newApp(t).addr()
	cart := sidecar("shop", "cart")

	refused := []struct {
		name string
		who  *auth.Principal
		call func(ctx context.Context) error
	}{
		{"register another service", cart, func(ctx context.Context) error {
			_, err := client.Register(ctx, &cpv1.RegisterRequest{Namespace: "shop", Service: "web", Address: addr, Healthy: true})
			return err
		}},
		{"register in another namespace", cart, func(ctx context.Context) error {
			_, err := client.Register(ctx, &cpv1.RegisterRequest{Namespace: "billing", Service: "cart", Address: addr, Healthy: true})
			return err
		}},
		{"register with a credential for every name", &auth.Principal{Kind: auth.KindProxy, Name: "shop-any", ProxyRole: "sidecar", ProxyNamespace: "shop", ProxyName: "*"}, func(ctx context.Context) error {
			_, err := client.Register(ctx, &cpv1.RegisterRequest{Namespace: "shop", Service: "cart", Address: addr, Healthy: true})
			return err
		}},
		{"deregister another service", cart, func(ctx context.Context) error {
			_, err := client.Deregister(ctx, &cpv1.DeregisterRequest{Namespace: "shop", Service: "web", Address: addr})
			return err
		}},
		{"look up another namespace", cart, func(ctx context.Context) error {
			_, err := client.Lookup(ctx, &cpv1.LookupRequest{Namespace: "billing", Service: "cart"})
			return err
		}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			wantCode(t, c.call(as(t, c.who)), codes.PermissionDenied, c.name)
		})
	}
	if n := metricValue(t, metrics, "portcullis_registry_refused_total", map[string]string{"rpc": "register", "reason": "permission_denied"}); n != 3 {
		t.Errorf("refused registrations counted %v, want 3", n)
	}

	// What it is bound to, it may do.
	if _, err := client.Register(as(t, cart), &cpv1.RegisterRequest{Namespace: "shop", Service: "cart", Address: addr, Healthy: true}); err != nil {
		t.Fatalf("a proxy registering its own service: %v", err)
	}
	waitEndpoints(t, reg, "shop", "cart", 5*time.Second, addr)
	if _, known := reg.Endpoints("shop", "web"); known {
		t.Error("a refused registration of shop/web was stored")
	}
	if _, known := reg.Endpoints("billing", "cart"); known {
		t.Error("a refused registration of billing/cart was stored")
	}
}

// Callers that are not proxies need Options.Authorize's permission; without an
// authorizer they get none. A status from the authorizer is passed on.
func TestOperatorNeedsAuthorization(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	authz := newAllow("write ops/api", "read ops/api")
	client := serve(t, newRegistry(t, st, registry.Options{AllowLoopback: true, Authorize: func(ctx context.Context, verb, ns, svc string) error {
		if svc == "locked" {
			return status.Error(codes.FailedPrecondition, "the service is frozen for an audit")
		}
		return authz.Authorize(ctx, verb, ns, svc)
	}}))
	addr := newApp(t).addr()

	if _, err := client.Register(as(t, operator), &cpv1.RegisterRequest{Namespace: "ops", Service: "api", Address: addr, Healthy: true}); err != nil {
		t.Fatalf("an authorized operator: %v", err)
	}
	if _, err := client.Lookup(as(t, operator), &cpv1.LookupRequest{Namespace: "ops", Service: "api"}); err != nil {
		t.Fatalf("an authorized lookup: %v", err)
	}
	_, err := client.Register(as(t, operator), &cpv1.RegisterRequest{Namespace: "ops", Service: "db", Address: addr, Healthy: true})
	wantCode(t, err, codes.PermissionDenied, "register without a grant")
	if !strings.Contains(status.Convert(err).Message(), `no role grants "write ops/db"`) {
		t.Errorf("the refusal does not carry the authorizer's reason: %v", err)
	}
	_, err = client.Lookup(as(t, operator), &cpv1.LookupRequest{Namespace: "ops", Service: "db"})
	wantCode(t, err, codes.PermissionDenied, "lookup without a grant")
	_, err = client.Deregister(as(t, operator), &cpv1.DeregisterRequest{Namespace: "ops", Service: "db", Address: addr})
	wantCode(t, err, codes.PermissionDenied, "deregister without a grant")
	_, err = client.Register(as(t, operator), &cpv1.RegisterRequest{Namespace: "ops", Service: "locked", Address: addr, Healthy: true})
	wantCode(t, err, codes.FailedPrecondition, "the authorizer's own status")

	noAuthorizer := serve(t, newRegistry(t, st, registry.Options{AllowLoopback: true}))
	_, err = noAuthorizer.Register(as(t, operator), &cpv1.RegisterRequest{Namespace: "ops", Service: "api", Address: addr, Healthy: true})
	wantCode(t, err, codes.PermissionDenied, "an operator without an authorizer")
}

// A call without a credential is refused before anything else; apps, which have
// none, cannot register themselves.
func TestUnauthenticatedCallsAreRefused(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t, newStore(t), registry.Options{AllowLoopback: true, Authorize: newAllow("write shop/cart", "read shop/cart").Authorize})
	client := serve(t, reg)
	addr := newApp(t).addr()
	_, err := client.Register(as(t, nil), &cpv1.RegisterRequest{Namespace: "shop", Service: "cart", Address: addr, Healthy: true})
	wantCode(t, err, codes.Unauthenticated, "Register")
	_, err = client.Deregister(as(t, nil), &cpv1.DeregisterRequest{Namespace: "shop", Service: "cart", Address: addr})
	wantCode(t, err, codes.Unauthenticated, "Deregister")
	_, err = client.Lookup(as(t, nil), &cpv1.LookupRequest{Namespace: "shop", Service: "cart"})
	wantCode(t, err, codes.Unauthenticated, "Lookup")
	if _, known := reg.Endpoints("shop", "cart"); known {
		t.Error("an unauthenticated registration was stored")
	}
}

func TestRegisterValidation(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	strict := serve(t, newRegistry(t, st, registry.Options{MaxEndpointsPerService: 2}))
	cart := sidecar("shop", "cart")
	ok := func(addr string) *cpv1.RegisterRequest {
		return &cpv1.RegisterRequest{Namespace: "shop", Service: "cart", Address: addr, Healthy: true}
	}
	cases := []struct {
		name string
		req  *cpv1.RegisterRequest
		want string // in the message
	}{
		{"host name", ok("cart.internal:8080"), "is not ip:port"},
		{"no port", ok("10.0.0.1"), "is not ip:port"},
		{"port 0", ok("10.0.0.1:0"), "port 0"},
		{"loopback", ok("127.0.0.1:8080"), "loopback"},
		{"mapped loopback", ok("[::ffff:127.0.0.1]:8080"), "loopback"},
		{"IPv6 loopback", ok("[::1]:8080"), "loopback"},
		{"unspecified", ok("0.0.0.0:8080"), "unspecified"},
		{"metadata service", ok("169.254.169.254:80"), "link-local"},
		{"multicast", ok("224.0.0.1:80"), "multicast"},
		{"weight too high", &cpv1.RegisterRequest{Namespace: "shop", Service: "cart", Address: "10.0.0.1:80", Weight: 1001}, "weight 1001"},
		{"negative weight", &cpv1.RegisterRequest{Namespace: "shop", Service: "cart", Address: "10.0.0.1:80", Weight: -1}, "weight -1"},
		{"ttl too short", &cpv1.RegisterRequest{Namespace: "shop", Service: "cart", Address: "10.0.0.1:80", TtlSeconds: 4}, "ttl_seconds 4"},
		{"ttl too long", &cpv1.RegisterRequest{Namespace: "shop", Service: "cart", Address: "10.0.0.1:80", TtlSeconds: 301}, "ttl_seconds 301"},
		{"relative health path", &cpv1.RegisterRequest{Namespace: "shop", Service: "cart", Address: "10.0.0.1:80", HealthCheckPath: "healthz"}, "single '/'"},
		{"health path naming a host", &cpv1.RegisterRequest{Namespace: "shop", Service: "cart", Address: "10.0.0.1:80", HealthCheckPath: "//evil.example/x"}, "single '/'"},
		{"health path with a space", &cpv1.RegisterRequest{Namespace: "shop", Service: "cart", Address: "10.0.0.1:80", HealthCheckPath: "/a b"}, "space"},
		{"service with a slash", &cpv1.RegisterRequest{Namespace: "shop", Service: "cart/x", Address: "10.0.0.1:80"}, "not a DNS label"},
		{"no namespace", &cpv1.RegisterRequest{Service: "cart", Address: "10.0.0.1:80"}, "namespace is required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := strict.Register(as(t, cart), c.req)
			wantCode(t, err, codes.InvalidArgument, c.name)
			if msg := status.Convert(err).Message(); !strings.Contains(msg, c.want) {
				t.Errorf("message %q does not say %q", msg, c.want)
			}
		})
	}

	// Accepted: a private address, and an IPv4-mapped one stored in IPv4 form.
	if _, err := strict.Register(as(t, cart), ok("10.0.0.1:8080")); err != nil {
		t.Fatal(err)
	}
	got, err := strict.Register(as(t, cart), ok("[::ffff:10.0.0.2]:8080"))
	if err != nil {
		t.Fatal(err)
	}
	if got.GetAddress() != "10.0.0.2:8080" {
		t.Errorf("stored address %q, want the unmapped 10.0.0.2:8080", got.GetAddress())
	}
	// The service is full at 2: a third endpoint is refused, a renewal is not.
	eventually(t, 5*time.Second, "both endpoints in memory", func() bool {
		resp, err := strict.Lookup(as(t, cart), &cpv1.LookupRequest{Namespace: "shop", Service: "cart"})
		return err == nil && len(resp.GetEndpoints()) == 2
	})
	_, err = strict.Register(as(t, cart), ok("10.0.0.3:8080"))
	wantCode(t, err, codes.ResourceExhausted, "a third endpoint over MaxEndpointsPerService")
	if _, err := strict.Register(as(t, cart), ok("10.0.0.1:8080")); err != nil {
		t.Errorf("renewing an endpoint of a full service: %v", err)
	}
}
