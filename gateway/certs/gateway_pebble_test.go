package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway"
	"github.com/portcullis/portcullis/gateway/certs/acmetest"
)

const gatewayConfig = `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: web}
spec:
  address: 127.0.0.1:%[1]d
---
apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: websecure}
spec:
  address: 127.0.0.1:%[2]d
  tls:
    acme:
      directory: %[3]s
      caRootFile: %[4]s
      domains: [%[5]s]
      challenges: [HTTP01]
    hsts: {maxAge: 3600s}
  limits: {maxConnections: %[6]d}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: to-https}
spec:
  listeners: [web]
  rules:
    - redirect: {scheme: https, status: 308}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: app}
spec:
  listeners: [websecure]
  rules:
    - directResponse: {status: 200, body: "%[7]s"}
`

// TestGatewayEndToEnd runs the ingress from a config file: the certificate is
// obtained with HTTP-01 answered on the plain-HTTP listener in front of its
// redirect route, served with SNI to a client that verifies it, and a route
// answers; a reload that rebinds the HTTPS listener keeps the manager (no new
// order), and a reload that changes acme builds a new one.
func TestGatewayEndToEnd(t *testing.T) {
	const shop, api = "shop.example.test", "api.example.test"
	httpPort, tlsPort := acmetest.FreePorts(t)
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: httpPort, TLSPort: tlsPort})
	data := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "edge.yaml")
	write := func(domains string, maxConns int, body string) {
		cfg := fmt.Sprintf(gatewayConfig, httpPort, tlsPort, p.Directory, p.CARootFile, domains, maxConns, body)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(shop, 1000, "shop")
	g, err := gateway.New(gateway.Options{Role: gateway.RoleIngress, ConfigPaths: []string{cfgPath}, DataDir: data,
		Logger: acmetest.Logger(t), PollInterval: -1, ShutdownGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	tlsAddr := g.ListenerAddr("default/websecure")

	first := waitLeaf(t, tlsAddr, shop, p.Roots)
	client := httpsClient(tlsAddr, p.Roots)
	res, body := fetch(t, client, "https://"+shop+"/")
	if res.StatusCode != 200 || body != "shop" || res.Header.Get("Strict-Transport-Security") != "max-age=3600" {
		t.Fatalf("%s %q, Strict-Transport-Security %q", res.Status, body, res.Header.Get("Strict-Transport-Security"))
	}
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, _ = fetch(t, noFollow, "http://"+g.ListenerAddr("default/web")+"/cart")
	if res.StatusCode != http.StatusPermanentRedirect || !strings.HasPrefix(res.Header.Get("Location"), "https://") {
		t.Fatalf("plain HTTP: %s to %q, want the route's redirect", res.Status, res.Header.Get("Location"))
	}
	if ents, err := os.ReadDir(filepath.Join(data, "certs")); err != nil || len(ents) == 0 {
		t.Fatalf("storage under the -data directory: %v, %d entries", err, len(ents))
	}
	st := g.CertificateStatus()["default/websecure"]
	if len(st.Names) != 1 || st.Names[0].State != "valid" || st.Stats.Obtained != 1 || p.Orders() != 1 {
		t.Fatalf("status %+v, orders %d", st, p.Orders())
	}
	// The same, as metrics.
	var metrics strings.Builder
	rec := httptest.NewRecorder()
	g.Observer().Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	metrics.WriteString(rec.Body.String())
	for _, want := range []string{
		`portcullis_tls_certificate_state{listener="default/websecure",name="` + shop + `",role="ingress",state="valid"} 1`,
		`portcullis_acme_certificates_total{listener="default/websecure",outcome="obtained",role="ingress"} 1`,
	} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	expiry := `portcullis_tls_certificate_expiry_timestamp_seconds{listener="default/websecure",name="` + shop + `",role="ingress"} `
	_, after, _ := strings.Cut(metrics.String(), expiry)
	value, _, _ := strings.Cut(after, "\n")
	if v, err := strconv.ParseFloat(value, 64); err != nil || int64(v) != st.Names[0].NotAfter.Unix() {
		t.Errorf("expiry metric %q, want %d", value, st.Names[0].NotAfter.Unix())
	}

	// Rebind the HTTPS listener (a limit changed) and change a route: the
	// manager and its certificate are kept, and the CA is not asked again.
	write(shop, 2000, "shop v2")
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	leaf := waitLeaf(t, tlsAddr, shop, p.Roots)
	if _, body := fetch(t, client, "https://"+shop+"/"); body != "shop v2" {
		t.Fatalf("after reload: %q", body)
	}
	if leaf.SerialNumber.Cmp(first.SerialNumber) != 0 || p.Orders() != 1 || g.CertificateStatus()["default/websecure"].Manager != st.Manager {
		t.Fatalf("reload restarted ACME: serial %s (was %s), orders %d", leaf.SerialNumber, first.SerialNumber, p.Orders())
	}

	// A changed acme builds a new manager: the stored certificate is loaded
	// again, and only the new name is ordered.
	write(shop+", "+api, 2000, "shop v2")
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	waitLeaf(t, tlsAddr, api, p.Roots)
	if leaf := waitLeaf(t, tlsAddr, shop, p.Roots); leaf.SerialNumber.Cmp(first.SerialNumber) != 0 || p.Orders() != 2 {
		t.Fatalf("after an acme change: serial %s (was %s), orders %d (want 2)", leaf.SerialNumber, first.SerialNumber, p.Orders())
	}
	if g.CertificateStatus()["default/websecure"].Manager == st.Manager {
		t.Fatal("an acme change kept the old manager")
	}
}

func waitLeaf(t *testing.T, addr, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(issuance)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
		if err == nil {
			leaf := c.ConnectionState().PeerCertificates[0]
			c.Close()
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s within %s: %v", name, issuance, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpsClient(addr string, roots *x509.CertPool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func fetch(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}
