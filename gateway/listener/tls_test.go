package listener

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
)

// peerCN handshakes with the server for serverName and returns the CN of the
// certificate it presented.
func peerCN(t *testing.T, addr net.Addr, cfg *tls.Config) (string, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr.String(), cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

func TestSNIAndReload(t *testing.T) {
	ca := newTestCA(t)
	a := ca.issue(t, "a.test", []string{"a.test"}, false)
	b := ca.issue(t, "b.test", []string{"b.test", "*.b.test"}, false)
	spec := config.ListenerSpec{TLS: &config.ListenerTLS{Certificates: []config.CertificateFiles{a, b}}}
	s, _ := start(t, spec, echo)
	if s.Protocol() != config.ProtocolHTTPS {
		t.Fatalf("protocol %s, want HTTPS by default with tls", s.Protocol())
	}
	for name, want := range map[string]string{"a.test": "a.test", "b.test": "b.test", "x.b.test": "b.test"} {
		if cn, err := peerCN(t, s.Addr(), ca.clientTLS(name)); err != nil || cn != want {
			t.Fatalf("SNI %s: %q, %v; want %s", name, cn, err, want)
		}
	}

	// A reload that fails keeps the running certificates.
	bad := config.ListenerTLS{Certificates: []config.CertificateFiles{{CertFile: "/nonexistent.crt", KeyFile: a.KeyFile}}}
	if err := s.ReloadTLS(bad); err == nil || !strings.HasPrefix(err.Error(), "tls.certificates[0].certFile: open /nonexistent.crt") {
		t.Fatalf("reload error %v", err)
	}
	if cn, err := peerCN(t, s.Addr(), ca.clientTLS("a.test")); err != nil || cn != "a.test" {
		t.Fatalf("after a failed reload: %q, %v", cn, err)
	}

	// Reload from files: a.test now has a new certificate, without a rebind.
	a2 := ca.issue(t, "a2.test", []string{"a.test"}, false)
	if err := s.ReloadTLS(config.ListenerTLS{Certificates: []config.CertificateFiles{a2, b}}); err != nil {
		t.Fatal(err)
	}
	if cn, err := peerCN(t, s.Addr(), ca.clientTLS("a.test")); err != nil || cn != "a2.test" {
		t.Fatalf("after reload: %q, %v", cn, err)
	}

	// SetCertificates swaps the certificates directly.
	c3 := ca.issue(t, "c.test", []string{"a.test"}, false)
	cert, err := tls.LoadX509KeyPair(c3.CertFile, c3.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetCertificates([]tls.Certificate{cert}); err != nil {
		t.Fatal(err)
	}
	if cn, err := peerCN(t, s.Addr(), ca.clientTLS("a.test")); err != nil || cn != "c.test" {
		t.Fatalf("after SetCertificates: %q, %v", cn, err)
	}
}

func TestMTLS(t *testing.T) {
	ca := newTestCA(t)
	spec := httpsSpec(t, ca)
	spec.TLS.ClientCAFile = ca.caFile(t)
	s, ev := start(t, spec, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, TLSState(r).PeerCertificates[0].Subject.CommonName)
	}))
	// Without a client certificate the handshake fails (TLS 1.3 reports it on
	// the first read) and a security event is reported.
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.clientTLS("localhost")}}
	if res, err := noCert.Get("https://" + s.Addr().String() + "/"); err == nil {
		res.Body.Close()
		t.Fatal("request without a client certificate succeeded")
	}
	ev.wait(t, KindTLSHandshake)

	cf := ca.issue(t, "client-1", nil, true)
	cert, err := tls.LoadX509KeyPair(cf.CertFile, cf.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"h2", "http/1.1"} {
		cfg := ca.clientTLS("localhost", proto)
		cfg.Certificates = []tls.Certificate{cert}
		var p http.Protocols
		p.SetHTTP1(proto == "http/1.1")
		p.SetHTTP2(proto == "h2")
		tr := &http.Transport{TLSClientConfig: cfg, Protocols: &p}
		res, err := (&http.Client{Timeout: 5 * time.Second, Transport: tr}).Get("https://" + s.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		tr.CloseIdleConnections()
		if string(b) != "client-1" {
			t.Fatalf("%s: peer %q", proto, b)
		}
	}
}

func TestMinVersion(t *testing.T) {
	ca := newTestCA(t)
	spec := httpsSpec(t, ca)
	s12, _ := start(t, spec, echo)
	spec13 := httpsSpec(t, ca)
	spec13.TLS.MinVersion = "1.3"
	s13, _ := start(t, spec13, echo)

	cfg := ca.clientTLS("localhost")
	cfg.MaxVersion = tls.VersionTLS12
	if _, err := peerCN(t, s12.Addr(), cfg); err != nil {
		t.Fatalf("TLS 1.2 to a 1.2 listener: %v", err)
	}
	if _, err := peerCN(t, s13.Addr(), cfg); err == nil {
		t.Fatal("TLS 1.2 accepted by a 1.3 listener")
	}
	// No CBC or non-ECDHE suite in TLS 1.2.
	cfg.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	if _, err := peerCN(t, s12.Addr(), cfg); err == nil {
		t.Fatal("a CBC suite was accepted")
	}
}

func TestPlainHTTPToTLSPort(t *testing.T) {
	ca := newTestCA(t)
	s, _ := start(t, httpsSpec(t, ca), echo)
	got := exchange(t, dial(t, s.Addr()), "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.0 400 Bad Request") {
		t.Fatalf("%q", got)
	}
}

func TestNewErrors(t *testing.T) {
	ca := newTestCA(t)
	good := ca.issue(t, "good", []string{"localhost"}, false)
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	os.WriteFile(notPEM, []byte("not pem"), 0o600)
	tlsSpec := func(f func(*config.ListenerTLS)) config.ListenerSpec {
		t := &config.ListenerTLS{Certificates: []config.CertificateFiles{good}}
		f(t)
		return config.ListenerSpec{Address: "127.0.0.1:0", TLS: t}
	}
	for _, tc := range []struct {
		spec config.ListenerSpec
		want string
	}{
		{config.ListenerSpec{}, "address: required"},
		{config.ListenerSpec{Address: "nope"}, "address: "},
		{config.ListenerSpec{Address: ":1", Protocol: "SPDY"}, "protocol: "},
		{config.ListenerSpec{Address: ":1", Protocol: config.ProtocolHTTPS}, "tls: required"},
		{config.ListenerSpec{Address: ":1", Protocol: config.ProtocolH2C, TLS: &config.ListenerTLS{}}, "tls: only for protocol HTTPS"},
		{config.ListenerSpec{Address: ":1", Limits: config.ListenerLimits{MaxRequestHeaders: -1}}, "limits.maxRequestHeaders: "},
		{config.ListenerSpec{Address: ":1", Paths: config.PathPolicy{EscapedSlashes: "maybe"}}, "paths.escapedSlashes: "},
		{tlsSpec(func(t *config.ListenerTLS) { t.Certificates = nil }), "tls.certificates: "},
		{tlsSpec(func(t *config.ListenerTLS) { t.Certificates[0].CertFile = "/missing.crt" }), "tls.certificates[0].certFile: open /missing.crt"},
		{tlsSpec(func(t *config.ListenerTLS) {
			t.Certificates = append(t.Certificates, config.CertificateFiles{CertFile: good.CertFile, KeyFile: "/missing.key"})
		}), "tls.certificates[1].keyFile: open /missing.key"},
		{tlsSpec(func(t *config.ListenerTLS) { t.Certificates[0].KeyFile = notPEM }), "tls.certificates[0]: "},
		{tlsSpec(func(t *config.ListenerTLS) { t.MinVersion = "1.1" }), "tls.minVersion: "},
		{tlsSpec(func(t *config.ListenerTLS) { t.ClientCAFile = "/missing-ca.pem" }), "tls.clientCAFile: open /missing-ca.pem"},
		{tlsSpec(func(t *config.ListenerTLS) { t.ClientCAFile = notPEM }), "tls.clientCAFile: no PEM certificate"},
	} {
		_, err := New("x", tc.spec, echo, Options{})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want prefix %q", tc.spec, err, tc.want)
		}
	}
	// A bound address is an error of Start.
	s, _ := start(t, config.ListenerSpec{}, echo)
	other, err := New("y", config.ListenerSpec{Address: "256.0.0.1:1"}, echo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err == nil || !strings.HasPrefix(err.Error(), "address: ") {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
}

func TestEffectiveLimits(t *testing.T) {
	got := EffectiveLimits(config.ListenerLimits{MaxConnections: 5})
	want := Limits{5, 32 << 10, 100, 10 * time.Second, 120 * time.Second, 250, 16 << 20}
	if got != want {
		t.Fatalf("%+v, want %+v", got, want)
	}
}
