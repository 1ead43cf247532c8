package acmetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/portcullis/portcullis/gateway/certs"
	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/listener"
)

// FreePorts returns two TCP ports that were free on 127.0.0.1 a moment ago, for
// the plain-HTTP and the HTTPS listener: Pebble must know them before the
// listeners bind.
func FreePorts(t testing.TB) (httpPort, tlsPort int) {
	t.Helper()
	var ports [2]int
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1]
}

// EdgeConfig is what StartEdge runs.
type EdgeConfig struct {
	// ACME is the listener's tls.acme; Directory and CARootFile are filled in
	// from the Pebble.
	ACME config.ACME
	// Storage backs the Manager. Required.
	Storage certmagic.Storage
	// Handler serves the HTTPS listener. Nil: 200 with "hello <host>".
	Handler http.Handler
	// HSTS is the listener's tls.hsts.
	HSTS *config.HSTS
	// RenewCheckInterval is the Manager's. Zero: certmagic's default.
	RenewCheckInterval time.Duration
	// DeferStart leaves the Manager unstarted, for the test to start.
	DeferStart bool
}

// Edge is what the gateway runs for an HTTPS listener with tls.acme: the HTTPS
// listener with its Manager, and a plain-HTTP listener that answers HTTP-01
// before its handler, which redirects everything to HTTPS as an
// HTTP-to-HTTPS route does.
type Edge struct {
	HTTP, HTTPS *listener.Server
	Manager     *certs.Manager
	roots       *x509.CertPool
}

// StartEdge binds 127.0.0.1 on Pebble's HTTP and TLS ports, with SO_REUSEPORT:
// two edges (replicas) can share the ports, and the kernel spreads connections,
// the CA's validation included, over both. Everything stops when the test ends.
func StartEdge(t testing.TB, p *Pebble, httpPort, tlsPort int, c EdgeConfig) *Edge {
	t.Helper()
	c.ACME.Directory, c.ACME.CARootFile = p.Directory, p.CARootFile
	httpAddr := "127.0.0.1:" + strconv.Itoa(httpPort)
	tlsAddr := "127.0.0.1:" + strconv.Itoa(tlsPort)
	log := Logger(t)
	m, err := certs.New(c.ACME, certs.Options{Storage: c.Storage, Logger: log, HTTPChallengeAddr: httpAddr,
		TLSALPNChallengeAddr: tlsAddr, RenewCheckInterval: c.RenewCheckInterval})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	h := c.Handler
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello "+r.Host) })
	}
	acme := c.ACME
	e := &Edge{Manager: m, roots: p.Roots}
	e.HTTPS = serve(t, "https", config.ListenerSpec{Address: tlsAddr, TLS: &config.ListenerTLS{ACME: &acme, HSTS: c.HSTS}},
		h, listener.Options{Logger: log, Certificates: m})
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://"+r.Host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
	e.HTTP = serve(t, "http", config.ListenerSpec{Address: httpAddr}, redirect,
		listener.Options{Logger: log, Challenge: m.HandleHTTPChallenge})
	if !c.DeferStart {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func serve(t testing.TB, name string, spec config.ListenerSpec, h http.Handler, o listener.Options) *listener.Server {
	t.Helper()
	s, err := listener.New(name, spec, h, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

// Handshake completes a TLS handshake with the HTTPS listener for host (SNI),
// verifying the chain against Pebble's root, and returns the leaf certificate.
func (e *Edge) Handshake(host string) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.HTTPS.Addr().String(),
		&tls.Config{ServerName: host, RootCAs: e.roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// Client is an HTTPS client that trusts Pebble's root and connects every host
// name to the HTTPS listener (as DNS would).
func (e *Edge) Client() *http.Client {
	addr := e.HTTPS.Addr().String()
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// WaitCertificate handshakes for host until it gets a verified certificate or
// timeout passes, and returns the leaf.
func (e *Edge) WaitCertificate(t testing.TB, host string, timeout time.Duration) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		leaf, err := e.Handshake(host)
		if err == nil {
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s within %s: %v; status %+v", host, timeout, err, e.Manager.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
