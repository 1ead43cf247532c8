package gateway_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway"
	"github.com/portcullis/portcullis/internal/testutil"
)

func startLogged(t *testing.T, cfg string, poll time.Duration) (*gateway.Gateway, string, *testutil.SyncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	g, err := gateway.New(gateway.Options{Role: gateway.RoleIngress, ConfigPaths: []string{path},
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), PollInterval: poll, ShutdownGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	return g, path, logs
}

// TestSmugglingRefusedAndLogged sends a request with both Transfer-Encoding and
// Content-Length: it must get 400 and leave a security event in the log.
func TestSmugglingRefusedAndLogged(t *testing.T) {
	a := echo(t, "a")
	g, _, logs := startLogged(t, listenerYAML+clusterYAML("a", a.Listener.Addr().String())+`---
`+header+`kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - forward: {backends: [{cluster: a}]}
`, -1)
	defer g.Shutdown()
	c, err := net.DialTimeout("tcp", g.ListenerAddr("default/pub"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"event":"security"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no security event logged:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReloadOnSignalAndFileChange drives Run: a SIGHUP and a changed file each
// bring in the new config without a restart.
func TestReloadOnSignalAndFileChange(t *testing.T) {
	cfg := func(body string) string {
		return listenerYAML + "---\n" + header + `kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - directResponse: {status: 200, body: "` + body + `"}
`
	}
	g, path, _ := startLogged(t, cfg("one"), 50*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	base := "http://" + g.ListenerAddr("default/pub")
	waitBody := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get(base + "/")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) == want {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("never served %q", want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitBody("one")
	// A file change (the poller sees size and mtime).
	if err := os.WriteFile(path, []byte(cfg("two, from the file watcher")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitBody("two, from the file watcher")
	// SIGHUP. Write the file with the same size and an old mtime, so only the
	// signal can explain the reload.
	next := cfg("three, by SIGHUP!!!!!!!!!!")
	if len(next) != len(cfg("two, from the file watcher")) {
		t.Fatalf("test bug: sizes differ (%d vs %d)", len(next), len(cfg("two, from the file watcher")))
	}
	st, _ := os.Stat(path)
	if err := os.WriteFile(path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(path, st.ModTime(), st.ModTime())
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitBody("three, by SIGHUP!!!!!!!!!!")
}

// TestHTTPSListenerServesHTTP2 checks TLS termination with a static certificate
// and ALPN: an HTTP/2 client and an HTTP/1.1 client both reach the route.
func TestHTTPSListenerServesHTTP2(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := makeCert(t, dir)
	g, _, _ := startLogged(t, httpsDoc(certFile, keyFile, "secure"), -1)
	defer g.Shutdown()
	url := "https://localhost:" + portOf(g.ListenerAddr("default/pub")) + "/"
	for _, tc := range []struct {
		name  string
		h2    bool
		proto string
	}{{"h2", true, "HTTP/2.0"}, {"http/1.1", false, "HTTP/1.1"}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: tc.h2}
			if !tc.h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			resp, body := get(t, &http.Client{Transport: tr, Timeout: 5 * time.Second}, mustReq(t, "GET", url, nil))
			if resp.StatusCode != 200 || string(body) != "secure" || resp.Proto != tc.proto {
				t.Fatalf("%s %d %q", resp.Proto, resp.StatusCode, body)
			}
			if v := resp.TLS.Version; v < tls.VersionTLS12 {
				t.Fatalf("TLS version %x", v)
			}
		})
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func makeCert(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	return makeCertSerial(t, dir, 1)
}

func makeCertSerial(t *testing.T, dir string, serial int64) (string, string, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestCertificateRenewedInPlace overwrites the certificate files of a running HTTPS
// listener: after a reload, new handshakes get the new certificate, with no rebind
// and no restart.
func TestCertificateRenewedInPlace(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, poolA := makeCert(t, dir)
	g, _, _ := startLogged(t, httpsDoc(certFile, keyFile, "ok"), -1)
	defer g.Shutdown()
	addr := g.ListenerAddr("default/pub")
	serial := func(pool *x509.CertPool) (string, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	before, err := serial(poolA)
	if err != nil {
		t.Fatal(err)
	}
	// Renew: new key and certificate at the same paths.
	_, _, poolB := makeCertSerial(t, dir, 2)
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	after, err := serial(poolB)
	if err != nil {
		t.Fatalf("handshake after renewal: %v", err)
	}
	if before == after {
		t.Fatalf("still serving serial %s after the files were renewed", before)
	}
	if got := g.ListenerAddr("default/pub"); got != addr {
		t.Fatalf("listener moved from %s to %s: it was rebound, not reloaded", addr, got)
	}
}

// httpsDoc is an HTTPS listener with the given certificate and a route that
// answers body directly.
func httpsDoc(certFile, keyFile, body string) string {
	return header + `kind: Listener
metadata: {name: pub}
spec:
  address: 127.0.0.1:0
  protocol: HTTPS
  tls:
    certificates: [{certFile: "` + certFile + `", keyFile: "` + keyFile + `"}]
---
` + header + `kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - directResponse: {status: 200, body: "` + body + `"}
`
}
