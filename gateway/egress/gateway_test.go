package egress_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway"
)

const (
	idCheckout = "spiffe://test/ns/shop/sa/checkout" // allowed to the TLS services and, by prefix, to echo
	idBatch    = "spiffe://test/ns/billing/sa/batch" // only echo, in report mode
)

func port(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// metric is the egress decisions counter summed over the series whose labels
// include labels.
func metric(t *testing.T, g *gateway.Gateway, labels map[string]string) float64 {
	t.Helper()
	return counterValue(t, g, "portcullis_egress_decisions_total", labels)
}

// TestEgressListener runs one egress gateway (an mTLS listener and a clear-text
// one) against real servers on loopback and checks what callers see.
func TestEgressListener(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	mustWrite(t, caFile, ca.pem)
	srvCert, srvKey := writePEM(t, dir, "egress", ca.issue(t, ""))
	checkout, batch := ca.issue(t, idCheckout), ca.issue(t, idBatch)

	tunnelled := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello through the tunnel")
	}))
	defer tunnelled.Close()
	originated := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls=%v path=%s host=%s", r.TLS != nil, r.URL.Path, r.Host)
	}))
	defer originated.Close()
	originCA := filepath.Join(dir, "origin-ca.pem")
	mustWrite(t, originCA, pemOf(originated.Certificate()))
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "echo %s %s xff=%q proxyauth=%q", r.Method, r.URL.Path, r.Header.Get("X-Forwarded-For"), r.Header.Get("Proxy-Authorization"))
	}))
	defer echo.Close()
	public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "public %s", r.URL.Path)
	}))
	defer public.Close()
	var trapHits atomic.Int64
	trap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { trapHits.Add(1) }))
	defer trap.Close()

	cfg := fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: egress}
spec:
  address: 127.0.0.1:0
  tls:
    certificates: [{certFile: %q, keyFile: %q}]
    clientCAFile: %q
  egress: {connectTimeout: 2s, tunnelIdleTimeout: 10s}
---
apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: open}
spec:
  address: %s
  egress: {}
---
apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: secure-api}
spec: {hosts: ["127.0.0.1"], ports: [%s], allowPrivateAddresses: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: originated}
spec: {hosts: ["127.0.0.1"], ports: [%s], originateTLS: true, caFile: %q, allowPrivateAddresses: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: echo}
spec: {hosts: ["127.0.0.1"], ports: [%s], allowPrivateAddresses: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: public}
spec: {hosts: ["127.0.0.1"], ports: [%s], allowPrivateAddresses: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: guarded}
spec: {hosts: ["127.0.0.1"], ports: [%s]}
---
apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: metadata}
spec: {hosts: ["169.254.169.254"], ports: [80]}
---
apiVersion: portcullis.dev/v1alpha1
kind: EgressPolicy
metadata: {name: checkout-out}
spec: {from: [%q], to: [secure-api, originated, guarded, metadata]}
---
apiVersion: portcullis.dev/v1alpha1
kind: EgressPolicy
metadata: {name: shop-echo}
spec: {from: ["spiffe://test/ns/shop/*"], to: [echo], methods: [GET], paths: [/v1]}
---
apiVersion: portcullis.dev/v1alpha1
kind: EgressPolicy
metadata: {name: batch-trial}
spec: {from: [%q], to: [echo], methods: [GET], mode: report}
---
apiVersion: portcullis.dev/v1alpha1
kind: EgressPolicy
metadata: {name: anyone-public}
spec: {from: ["*"], to: [public]}
`, srvCert, srvKey, caFile, freeAddr(t), port(t, tunnelled.URL), port(t, originated.URL), originCA,
		port(t, echo.URL), port(t, public.URL), port(t, trap.URL), idCheckout, idBatch)
	g, logs := startEgress(t, cfg)
	mtlsAddr, openAddr := g.ListenerAddr("default/egress"), g.ListenerAddr("default/open")
	tunnelledHost := strings.TrimPrefix(tunnelled.URL, "https://")

	get := func(t *testing.T, cert *tls.Certificate, method, target string) (*http.Response, string) {
		t.Helper()
		addr := openAddr
		if cert != nil {
			addr = mtlsAddr
		}
		c := dialEgress(t, addr, ca, cert)
		defer c.Close()
		req := &http.Request{Method: method, Host: target, URL: &url.URL{Host: target}, Header: http.Header{}}
		if method != http.MethodConnect {
			var err error
			if req, err = http.NewRequest(method, target, nil); err != nil {
				t.Fatal(err)
			}
		}
		req.Header.Set("Proxy-Authorization", "Basic s3cr3t-proxy-credential")
		resp, body, _ := proxyRequest(t, c, req)
		return resp, body
	}

	t.Run("connect tunnel carries TLS end to end", func(t *testing.T) {
		c := dialEgress(t, mtlsAddr, ca, &checkout)
		defer c.Close()
		req := &http.Request{Method: http.MethodConnect, Host: tunnelledHost, URL: &url.URL{Host: tunnelledHost}, Header: http.Header{}}
		resp, _, br := proxyRequest(t, c, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT: %d", resp.StatusCode)
		}
		if br.Buffered() != 0 {
			t.Fatalf("the egress sent %d bytes after its 200", br.Buffered())
		}
		pool := x509.NewCertPool()
		pool.AddCert(tunnelled.Certificate())
		tc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS through the tunnel: %v", err)
		}
		inner, _ := http.NewRequest(http.MethodGet, "https://"+tunnelledHost+"/x", nil)
		if err := inner.Write(tc); err != nil {
			t.Fatal(err)
		}
		iresp, err := http.ReadResponse(bufio.NewReader(tc), inner)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(iresp.Body)
		if string(b) != "hello through the tunnel" {
			t.Fatalf("inner response %q", b)
		}
		if n := metric(t, g, map[string]string{"external_service": "secure-api", "decision": "allow"}); n < 1 {
			t.Fatalf("allow decisions for secure-api = %v", n)
		}
	})

	t.Run("caller identity decides", func(t *testing.T) {
		resp, body := get(t, &batch, http.MethodConnect, tunnelledHost)
		wantRefusal(t, resp, body, http.StatusForbidden, "egress_caller_denied")
		if n := metric(t, g, map[string]string{"namespace": "default", "external_service": "secure-api", "decision": "deny", "reason": "egress_caller_denied"}); n != 1 {
			t.Fatalf("deny decisions = %v, want 1", n)
		}
	})

	t.Run("unknown destination", func(t *testing.T) {
		resp, body := get(t, &checkout, http.MethodConnect, "127.0.0.1:1")
		wantRefusal(t, resp, body, http.StatusForbidden, "egress_unknown_destination")
		resp, body = get(t, &checkout, http.MethodGet, "http://api.unknown.example/x")
		wantRefusal(t, resp, body, http.StatusForbidden, "egress_unknown_destination")
		if n := metric(t, g, map[string]string{"external_service": "", "reason": "egress_unknown_destination"}); n != 2 {
			t.Fatalf("unknown-destination decisions = %v, want 2", n)
		}
	})

	t.Run("methods and paths of absolute-form requests", func(t *testing.T) {
		resp, body := get(t, &checkout, http.MethodGet, echo.URL+"/v1/items")
		if resp.StatusCode != http.StatusOK || body != `echo GET /v1/items xff="" proxyauth=""` {
			t.Fatalf("allowed request: %d %q", resp.StatusCode, body)
		}
		for _, c := range []struct{ method, path string }{
			{http.MethodGet, "/v2"}, {http.MethodGet, "/v10"}, {http.MethodPost, "/v1/items"}, {http.MethodGet, "/v1/../v2"},
		} {
			resp, body := get(t, &checkout, c.method, echo.URL+c.path)
			wantRefusal(t, resp, body, http.StatusForbidden, "egress_operation_denied")
		}
		// The policy has methods and paths, which a tunnel would hide.
		resp, body = get(t, &checkout, http.MethodConnect, strings.TrimPrefix(echo.URL, "http://"))
		wantRefusal(t, resp, body, http.StatusForbidden, "egress_operation_denied")
	})

	t.Run("report mode allows and counts", func(t *testing.T) {
		before := metric(t, g, map[string]string{"external_service": "echo", "decision": "report"})
		resp, body := get(t, &batch, http.MethodPost, echo.URL+"/v2/anything")
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "echo POST /v2/anything") {
			t.Fatalf("report mode: %d %q", resp.StatusCode, body)
		}
		if n := metric(t, g, map[string]string{"external_service": "echo", "decision": "report", "reason": "egress_operation_denied"}); n != before+1 {
			t.Fatalf("report decisions = %v, want %v", n, before+1)
		}
	})

	t.Run("anonymous callers and origin-form", func(t *testing.T) {
		resp, body := get(t, nil, http.MethodGet, public.URL+"/open")
		if resp.StatusCode != http.StatusOK || body != "public /open" {
			t.Fatalf("anonymous to a from-* service: %d %q", resp.StatusCode, body)
		}
		resp, body = get(t, nil, http.MethodGet, echo.URL+"/v1/items")
		wantRefusal(t, resp, body, http.StatusForbidden, "egress_caller_denied")
		// Origin-form: an app that reached the egress by DNS names the service in Host.
		c := dialEgress(t, openAddr, nil, nil)
		defer c.Close()
		req, _ := http.NewRequest(http.MethodGet, public.URL+"/by-dns", nil)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := req.Write(c); err != nil {
			t.Fatal(err)
		}
		oresp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(oresp.Body)
		if oresp.StatusCode != http.StatusOK || string(b) != "public /by-dns" {
			t.Fatalf("origin-form: %d %q", oresp.StatusCode, b)
		}
	})

	t.Run("SSRF guard refuses private literals by default", func(t *testing.T) {
		resp, body := get(t, &checkout, http.MethodGet, trap.URL+"/")
		wantRefusal(t, resp, body, http.StatusForbidden, "egress_address_refused")
		resp, body = get(t, &checkout, http.MethodConnect, "169.254.169.254:80")
		wantRefusal(t, resp, body, http.StatusForbidden, "egress_address_refused")
		if trapHits.Load() != 0 {
			t.Fatalf("the loopback server behind a guarded service was reached %d times", trapHits.Load())
		}
	})

	t.Run("TLS origination with the service's caFile", func(t *testing.T) {
		target := "http://" + strings.TrimPrefix(originated.URL, "https://") + "/orig"
		resp, body := get(t, &checkout, http.MethodGet, target)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "tls=true path=/orig") {
			t.Fatalf("originated: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("denials are security events without credentials", func(t *testing.T) {
		l := logs.String()
		if !strings.Contains(l, `"kind":"policy_denied"`) || !strings.Contains(l, "egress_caller_denied: caller="+idBatch) {
			t.Fatalf("no security event for the denied caller in the log:\n%s", l)
		}
		if strings.Contains(l, "s3cr3t") {
			t.Fatal("a Proxy-Authorization credential reached the log")
		}
	})
}

// freeAddr returns a loopback address with a port free now: the config
// refuses two listeners on "127.0.0.1:0".
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
