package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
)

// fakeSource stands in for the ACME manager: it serves the certificates it was
// given by SNI name and a challenge certificate to acme-tls/1 handshakes.
type fakeSource struct {
	byName    map[string]*tls.Certificate
	challenge *tls.Certificate
	calls     atomic.Int32
}

func (f *fakeSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.calls.Add(1)
	if isACMEChallenge(hello) {
		if f.challenge == nil {
			return nil, errors.New("no challenge pending")
		}
		return f.challenge, nil
	}
	if c := f.byName[hello.ServerName]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("%s is not managed", hello.ServerName)
}

func loadPair(t *testing.T, f config.CertificateFiles) *tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// served handshakes with sni and ALPN protos without verifying the peer, and
// returns the CN of the certificate presented and the negotiated protocol.
func served(addr net.Addr, sni string, protos ...string) (cn, proto string, err error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr.String(),
		&tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: protos})
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	st := c.ConnectionState()
	return st.PeerCertificates[0].Subject.CommonName, st.NegotiatedProtocol, nil
}

func acmeSpec(static ...config.CertificateFiles) config.ListenerSpec {
	return config.ListenerSpec{TLS: &config.ListenerTLS{
		Certificates: static,
		ACME:         &config.ACME{Directory: "https://ca.invalid/directory", Domains: []string{"managed.test"}},
	}}
}

func startWith(t *testing.T, spec config.ListenerSpec, opts Options, h http.Handler) *Server {
	t.Helper()
	spec.Address = "127.0.0.1:0"
	s, err := New("test", spec, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCertificateSelectionOrder: with acme, a static certificate covering the
// SNI name wins (exact before wildcard), then the managed one, then the first
// static certificate; a source attached later takes effect for new handshakes.
func TestCertificateSelectionOrder(t *testing.T) {
	ca := newTestCA(t)
	def := ca.issue(t, "default-static", []string{"default.test"}, false)
	pinned := ca.issue(t, "pinned-static", []string{"pinned.test", "*.wild.test"}, false)
	src := &fakeSource{byName: map[string]*tls.Certificate{
		"managed.test": loadPair(t, ca.issue(t, "managed", []string{"managed.test"}, false)),
		"pinned.test":  loadPair(t, ca.issue(t, "managed-pinned", []string{"pinned.test"}, false)),
		"a.wild.test":  loadPair(t, ca.issue(t, "managed-wild", []string{"a.wild.test"}, false)),
	}}
	s := startWith(t, acmeSpec(def, pinned), Options{}, echo)

	// Before a source is attached only the static certificates are served.
	if cn, _, err := served(s.Addr(), "managed.test"); err != nil || cn != "default-static" {
		t.Fatalf("without a source: %q, %v; want the static default", cn, err)
	}
	if err := s.SetCertificateSource(src); err != nil {
		t.Fatal(err)
	}
	for sni, want := range map[string]string{
		"pinned.test":  "pinned-static",  // static exact match beats the managed certificate
		"a.wild.test":  "pinned-static",  // a static wildcard covers it too
		"managed.test": "managed",        // no static certificate covers it
		"PINNED.test":  "pinned-static",  // static names are matched case-insensitively
		"other.test":   "default-static", // neither: the first static certificate
		"":             "default-static", // no SNI
	} {
		if cn, _, err := served(s.Addr(), sni); err != nil || cn != want {
			t.Errorf("SNI %q: %q, %v; want %s", sni, cn, err, want)
		}
	}
	// A verifying client gets a chain it accepts for a managed name.
	if cn, err := peerCN(t, s.Addr(), ca.clientTLS("managed.test")); err != nil || cn != "managed" {
		t.Fatalf("verified handshake: %q, %v", cn, err)
	}

	// With acme alone, a name nobody has fails the handshake.
	only := startWith(t, acmeSpec(), Options{Certificates: src}, echo)
	if cn, _, err := served(only.Addr(), "managed.test"); err != nil || cn != "managed" {
		t.Fatalf("acme only: %q, %v", cn, err)
	}
	if _, _, err := served(only.Addr(), "other.test"); err == nil {
		t.Fatal("a name with no certificate completed its handshake")
	}
	if err := startWith(t, config.ListenerSpec{}, Options{}, echo).SetCertificateSource(src); err == nil {
		t.Fatal("SetCertificateSource on a clear-text listener succeeded")
	}
}

// TestTLSALPNChallengeHandshake: a ClientHello offering only acme-tls/1 gets the
// source's challenge certificate and is closed after the handshake, even on an
// mTLS listener; without TLS-ALPN-01 in the challenges the protocol is refused.
func TestTLSALPNChallengeHandshake(t *testing.T) {
	ca := newTestCA(t)
	src := &fakeSource{challenge: loadPair(t, ca.issue(t, "challenge", []string{"shop.test"}, false))}
	spec := acmeSpec(ca.issue(t, "static", []string{"static.test"}, false))
	spec.TLS.ClientCAFile = ca.caFile(t)
	s := startWith(t, spec, Options{Certificates: src}, echo)

	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.Addr().String(),
		&tls.Config{ServerName: "shop.test", InsecureSkipVerify: true, NextProtos: []string{"acme-tls/1"}})
	if err != nil {
		t.Fatalf("validation handshake on an mTLS listener: %v", err)
	}
	st := c.ConnectionState()
	if st.NegotiatedProtocol != "acme-tls/1" || st.PeerCertificates[0].Subject.CommonName != "challenge" {
		t.Fatalf("negotiated %q with certificate %q", st.NegotiatedProtocol, st.PeerCertificates[0].Subject.CommonName)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after the validation handshake: read %d, %v; want the server to close", n, err)
	}
	c.Close()
	if s.Stats().OpenConnections != 0 {
		eventually(t, "the validation connection to be released", func() bool { return s.Stats().OpenConnections == 0 })
	}
	// mTLS still applies to every other client.
	res, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.clientTLS("static.test")}}).
		Get("https://" + s.Addr().String() + "/")
	if err == nil {
		res.Body.Close()
		t.Fatal("a client without a certificate was served")
	}

	http01 := acmeSpec(ca.issue(t, "static2", []string{"static.test"}, false))
	http01.TLS.ACME.Challenges = []string{config.ChallengeHTTP01}
	s2 := startWith(t, http01, Options{Certificates: src}, echo)
	if _, proto, err := served(s2.Addr(), "shop.test", "acme-tls/1"); err == nil {
		t.Fatalf("acme-tls/1 negotiated (%q) with TLS-ALPN-01 disabled", proto)
	}
}

// TestHSTS: HTTPS responses (HTTP/1.1 and HTTP/2) carry Strict-Transport-Security
// when tls.hsts is set; clear-text responses never do.
func TestHSTS(t *testing.T) {
	ca := newTestCA(t)
	year := config.Duration(365 * 24 * time.Hour)
	spec := httpsSpec(t, ca)
	spec.TLS.HSTS = &config.HSTS{MaxAge: &year, IncludeSubDomains: true}
	s := startWith(t, spec, Options{}, echo)
	for _, proto := range []string{"h2", "http/1.1"} {
		var p http.Protocols
		p.SetHTTP1(proto == "http/1.1")
		p.SetHTTP2(proto == "h2")
		tr := &http.Transport{TLSClientConfig: ca.clientTLS("localhost"), Protocols: &p}
		res, err := (&http.Client{Timeout: 5 * time.Second, Transport: tr}).Get("https://" + s.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		tr.CloseIdleConnections()
		if got := res.Header.Get("Strict-Transport-Security"); got != "max-age=31536000; includeSubDomains" || res.Proto[:6] != map[string]string{"h2": "HTTP/2", "http/1.1": "HTTP/1"}[proto] {
			t.Errorf("%s (%s): Strict-Transport-Security %q", proto, res.Proto, got)
		}
	}
	plain := startWith(t, config.ListenerSpec{}, Options{}, echo)
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + plain.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if v, ok := res.Header["Strict-Transport-Security"]; ok {
		t.Fatalf("clear-text response carries Strict-Transport-Security %q", v)
	}
}

// TestACMEHTTPChallengeHook: on a clear-text listener, GET requests under
// /.well-known/acme-challenge/ go to the hook first; what it does not answer,
// and every other request, goes to the handler.
func TestACMEHTTPChallengeHook(t *testing.T) {
	var asked atomic.Int32
	hook := func(w http.ResponseWriter, r *http.Request) bool {
		asked.Add(1)
		if r.URL.Path != "/.well-known/acme-challenge/tok1" {
			return false
		}
		io.WriteString(w, "tok1.thumbprint")
		return true
	}
	s := startWith(t, config.ListenerSpec{}, Options{Challenge: hook}, echo)
	do := func(method, path string) string {
		req, _ := http.NewRequest(method, "http://"+s.Addr().String()+path, nil)
		res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return string(b)
	}
	for _, c := range []struct{ method, path, want string }{
		{"GET", "/.well-known/acme-challenge/tok1", "tok1.thumbprint"},
		{"GET", "/.well-known/acme-challenge/unknown", "GET /.well-known/acme-challenge/unknown "},
		{"POST", "/.well-known/acme-challenge/tok1", "POST /.well-known/acme-challenge/tok1 "},
		{"GET", "/app", "GET /app "},
	} {
		if got := do(c.method, c.path); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.path, got, c.want)
		}
	}
	if n := asked.Load(); n != 2 {
		t.Fatalf("hook asked %d times, want 2 (GETs under the challenge path only)", n)
	}
	// An HTTPS listener ignores the hook: HTTP-01 is a clear-text protocol.
	ca := newTestCA(t)
	tlsSrv := startWith(t, httpsSpec(t, ca), Options{Challenge: hook}, echo)
	res, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.clientTLS("localhost")}}).
		Get("https://" + tlsSrv.Addr().String() + "/.well-known/acme-challenge/tok1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.HasPrefix(string(b), "GET ") || asked.Load() != 2 {
		t.Fatalf("HTTPS: %q, hook asked %d times", b, asked.Load())
	}
}
