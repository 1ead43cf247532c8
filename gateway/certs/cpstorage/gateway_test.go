package cpstorage_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controlplane/server/servertest"
	"github.com/portcullis/portcullis/gateway"
	"github.com/portcullis/portcullis/gateway/certs/acmetest"
	"github.com/portcullis/portcullis/gateway/certs/cpstorage"
	"github.com/portcullis/portcullis/gateway/config"
)

// edgeConfig is an ingress whose ACME state is kept in the control plane.
const edgeConfig = `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: web, namespace: shop}
spec:
  address: 127.0.0.1:%[1]d
---
apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: websecure, namespace: shop}
spec:
  address: 127.0.0.1:%[2]d
  tls:
    acme:
      directory: %[3]s
      caRootFile: %[4]s
      domains: [%[5]s]
      storage: {controlPlane: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: app, namespace: shop}
spec:
  listeners: [websecure]
  rules:
    - directResponse: {status: 200, body: "shop"}
`

// startGateway runs an ingress whose config comes from Apply (as with
// -controlplane), with storage as its control-plane certificate storage.
func startGateway(t *testing.T, role string, storage *cpstorage.Storage, cfg string) (*gateway.Gateway, error) {
	t.Helper()
	opts := gateway.Options{Role: role, Dynamic: true, Logger: acmetest.Logger(t), PollInterval: -1, ShutdownGrace: 2 * time.Second}
	if storage != nil {
		opts.ControlPlaneCertStorage = storage
	}
	g, err := gateway.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	set, err := config.Parse("pushed config", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return g, g.Apply(set, []byte(cfg))
}

// TestGatewayKeepsCertificatesInControlPlane: an ingress with storage
// {controlPlane: true} obtains its certificate from Pebble and keeps it in the
// control plane; a second replica started later loads it from there and serves
// it without a second order.
func TestGatewayKeepsCertificatesInControlPlane(t *testing.T) {
	const name = "shop.example.test"
	cp := startControlPlane(t)
	httpPort, tlsPort := acmetest.FreePorts(t)
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: httpPort, TLSPort: tlsPort})
	cfg := fmt.Sprintf(edgeConfig, httpPort, tlsPort, p.Directory, p.CARootFile, name)

	first, err := startGateway(t, gateway.RoleIngress, cp.storage(t, servertest.Proxy, nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := waitValid(t, first, name)

	// What the control plane keeps, seen by another ingress of namespace shop.
	ctx := testContext(t, 10*time.Second)
	keys, err := cp.storage(t, servertest.Proxy, nil).List(ctx, "certificates", true)
	if err != nil || !slices.ContainsFunc(keys, func(k string) bool { return strings.HasSuffix(k, "/"+name+"/"+name+".crt") }) {
		t.Fatalf("the control plane keeps %q, %v; want the certificate of %s", keys, err, name)
	}

	second, err := startGateway(t, gateway.RoleIngress, cp.storage(t, servertest.Proxy, nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again := waitValid(t, second, name); !again.Equal(served) {
		t.Fatalf("the second replica serves a certificate expiring %s, the first %s", again, served)
	}
	if got := second.CertificateStatus()["shop/websecure"].Stats.Obtained; got != 0 || p.Orders() != 1 || p.Issued() != 1 {
		t.Fatalf("second replica obtained %d; Pebble saw %d orders, issued %d; want 0, 1, 1", got, p.Orders(), p.Issued())
	}
	// And the listener serves it to clients that verify Pebble's chain.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", second.ListenerAddr("shop/websecure"),
		&tls.Config{ServerName: name, RootCAs: p.Roots})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// waitValid waits until g's manager serves a valid certificate for name and
// returns its expiry.
func waitValid(t *testing.T, g *gateway.Gateway, name string) time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, n := range g.CertificateStatus()["shop/websecure"].Names {
			// Valid is reported as the certificate is stored; the expiry once
			// the manager serves it.
			if n.Name == name && n.State == "valid" && !n.NotAfter.IsZero() {
				return n.NotAfter
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no valid certificate for %s within 30s: %+v", name, g.CertificateStatus())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGatewayRefusesControlPlaneStorage: storage {controlPlane: true} is refused,
// naming the field, by a proxy without a control plane (run from files) and by
// one that is not an ingress.
func TestGatewayRefusesControlPlaneStorage(t *testing.T) {
	httpPort, tlsPort := acmetest.FreePorts(t)
	cfg := fmt.Sprintf(edgeConfig, httpPort, tlsPort, "https://127.0.0.1:1/dir", "", "shop.example.test")
	cfg = strings.Replace(cfg, "      caRootFile: \n", "", 1)
	if _, err := startGateway(t, gateway.RoleIngress, nil, cfg); err == nil ||
		!strings.Contains(err.Error(), "tls.acme.storage.controlPlane: this proxy has no control plane") ||
		!strings.Contains(err.Error(), "-controlplane") {
		t.Errorf("without a control plane: %v; want the field and the -controlplane flag named", err)
	}
	storage, err := cpstorage.New(cpstorage.Options{Addresses: []string{"127.0.0.1:1"}, Token: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { storage.Close() })
	if _, err := startGateway(t, gateway.RoleEgress, storage, cfg); err == nil ||
		!strings.Contains(err.Error(), "tls.acme.storage.controlPlane: only ingress proxies") {
		t.Errorf("an egress proxy: %v; want it refused as not an ingress", err)
	}
}
