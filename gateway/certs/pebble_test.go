package certs_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/controlplane/store/certstorage"
	"github.com/portcullis/portcullis/gateway/certs"
	"github.com/portcullis/portcullis/gateway/certs/acmetest"
	"github.com/portcullis/portcullis/gateway/config"
)

// issuance bounds one certificate from Pebble (validation included); Pebble
// needs well under a second on loopback.
const issuance = 20 * time.Second

// obtain starts Pebble and an edge for acme and waits for name's certificate.
func obtain(t *testing.T, acme config.ACME, name string, po acmetest.PebbleOptions) (*acmetest.Pebble, *acmetest.Edge) {
	t.Helper()
	po.HTTPPort, po.TLSPort = acmetest.FreePorts(t)
	p := acmetest.StartPebble(t, po)
	e := acmetest.StartEdge(t, p, po.HTTPPort, po.TLSPort, acmetest.EdgeConfig{ACME: acme, Storage: certs.FileStorage(t.TempDir())})
	leaf := e.WaitCertificate(t, name, issuance)
	if !slices.Equal(leaf.DNSNames, []string{name}) {
		t.Fatalf("certificate for %v, want [%s]", leaf.DNSNames, name)
	}
	return p, e
}

// get requests https://host/path through the edge, verifying Pebble's chain.
func get(t *testing.T, e *acmetest.Edge, host, path string) (*http.Response, string) {
	t.Helper()
	res, err := e.Client().Get("https://" + host + path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func TestObtainWithHTTP01(t *testing.T) {
	const name = "shop.example.test"
	p, e := obtain(t, config.ACME{Domains: []string{name}, Challenges: []string{config.ChallengeHTTP01}}, name, acmetest.PebbleOptions{})
	if res, body := get(t, e, name, "/"); res.StatusCode != 200 || body != "hello "+name {
		t.Fatalf("%s: %q", res.Status, body)
	}
	if p.Orders() != 1 || p.Issued() != 1 {
		t.Fatalf("orders %d, issued %d; want 1, 1", p.Orders(), p.Issued())
	}
	st := e.Manager.Status()
	if len(st) != 1 || st[0].Name != name || st[0].State != certs.StateValid || st[0].NotAfter.Before(time.Now()) {
		t.Fatalf("status %+v", st)
	}
	if s := e.Manager.Stats(); s.Obtained != 1 || s.Failed != 0 {
		t.Fatalf("stats %+v", s)
	}
	// The plain-HTTP listener still routes everything else: an unknown token
	// under the challenge path is redirected like any path.
	res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).
		Get("http://" + e.HTTP.Addr().String() + "/.well-known/acme-challenge/unknown")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusPermanentRedirect {
		t.Fatalf("unknown challenge token: %s, want the route's redirect", res.Status)
	}
}

func TestObtainWithTLSALPN01(t *testing.T) {
	const name = "alpn.example.test"
	p, e := obtain(t, config.ACME{Domains: []string{name}, Challenges: []string{config.ChallengeTLSALPN01}}, name, acmetest.PebbleOptions{})
	if res, body := get(t, e, name, "/x"); res.StatusCode != 200 || body != "hello "+name {
		t.Fatalf("%s: %q", res.Status, body)
	}
	if p.Orders() != 1 || p.Issued() != 1 {
		t.Fatalf("orders %d, issued %d; want 1, 1", p.Orders(), p.Issued())
	}
}

// TestObtainDespiteBadNonces: Pebble refuses 30% of valid nonces; acmez retries
// each refused request with the fresh nonce it got, and issuance succeeds at
// once. Three names make some thirty requests, so that refusals are all but
// certain (0.7^30) while ten refusals of one request in a row are not (0.3^10).
func TestObtainDespiteBadNonces(t *testing.T) {
	names := []string{"n1.example.test", "n2.example.test", "n3.example.test"}
	httpPort, tlsPort := acmetest.FreePorts(t)
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: httpPort, TLSPort: tlsPort, NonceRejectPercent: 30})
	e := acmetest.StartEdge(t, p, httpPort, tlsPort, acmetest.EdgeConfig{
		ACME: config.ACME{Domains: names}, Storage: certs.FileStorage(t.TempDir())})
	for _, n := range names {
		e.WaitCertificate(t, n, issuance)
	}
	if p.BadNonces() == 0 {
		t.Fatal("Pebble refused no nonce: the test proved nothing")
	}
	if p.Issued() != len(names) || e.Manager.Stats().Failed != 0 {
		t.Fatalf("issued %d, stats %+v; want %d and no failure", p.Issued(), e.Manager.Stats(), len(names))
	}
	t.Logf("%d badNonce refusals retried", p.BadNonces())
}

// TestRenewal: the served certificate changes without a restart of the
// listener, by a forced renewal and by background maintenance once renewBefore
// makes the certificate due.
func TestRenewal(t *testing.T) {
	const name = "renew.example.test"
	httpPort, tlsPort := acmetest.FreePorts(t)
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: httpPort, TLSPort: tlsPort})
	e := acmetest.StartEdge(t, p, httpPort, tlsPort, acmetest.EdgeConfig{
		ACME: config.ACME{Domains: []string{name}}, Storage: certs.FileStorage(t.TempDir())})
	first := e.WaitCertificate(t, name, issuance)
	listenerAddr := e.HTTPS.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), issuance)
	defer cancel()
	if err := e.Manager.Renew(ctx, name); err != nil {
		t.Fatal(err)
	}
	second, err := e.Handshake(name)
	if err != nil {
		t.Fatal(err)
	}
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("Renew: the listener serves the same certificate")
	}
	if e.HTTPS.Addr().String() != listenerAddr || p.Issued() != 2 {
		t.Fatalf("listener %s (was %s), issued %d", e.HTTPS.Addr(), listenerAddr, p.Issued())
	}
	if s := e.Manager.Stats(); s.Renewed != 1 {
		t.Fatalf("stats %+v, want one renewal", s)
	}

	// Background maintenance: renewBefore longer than the lifetime makes a
	// certificate due after 1% of it (the window is capped at 99%: 1.2s of two
	// minutes); a short check interval finds it.
	storage := certs.FileStorage(t.TempDir())
	const auto = "auto.example.test"
	httpPort, tlsPort = acmetest.FreePorts(t)
	p = acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: httpPort, TLSPort: tlsPort, Validity: 2 * time.Minute})
	twoHours := config.Duration(2 * time.Hour)
	e = acmetest.StartEdge(t, p, httpPort, tlsPort, acmetest.EdgeConfig{
		ACME: config.ACME{Domains: []string{auto}, RenewBefore: &twoHours}, Storage: storage, RenewCheckInterval: 200 * time.Millisecond})
	first = e.WaitCertificate(t, auto, issuance)
	deadline := time.Now().Add(issuance)
	for {
		leaf, err := e.Handshake(auto)
		if err == nil && leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("maintenance did not renew within %s: %v; stats %+v", issuance, err, e.Manager.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOnDemandAllowList: a name the allow-list permits is obtained during its
// first handshake; any other name fails the handshake and no order is placed.
func TestOnDemandAllowList(t *testing.T) {
	httpPort, tlsPort := acmetest.FreePorts(t)
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: httpPort, TLSPort: tlsPort})
	e := acmetest.StartEdge(t, p, httpPort, tlsPort, acmetest.EdgeConfig{
		ACME:    config.ACME{OnDemand: &config.OnDemand{Allow: []string{"*.tenants.example.test", "exact.example.test"}}},
		Storage: certs.FileStorage(t.TempDir())})

	for _, name := range []string{"evil.example.test", "a.b.tenants.example.test", "tenants.example.test"} {
		if _, err := e.Handshake(name); err == nil {
			t.Errorf("%s: handshake succeeded outside the allow-list", name)
		}
	}
	if p.Orders() != 0 {
		t.Fatalf("names outside the allow-list placed %d orders", p.Orders())
	}

	const name = "acme-corp.tenants.example.test"
	leaf, err := e.Handshake(name) // obtained during this handshake
	if err != nil {
		t.Fatalf("first handshake for an allowed name: %v", err)
	}
	if !slices.Equal(leaf.DNSNames, []string{name}) || p.Orders() != 1 {
		t.Fatalf("certificate for %v, orders %d", leaf.DNSNames, p.Orders())
	}
	if res, body := get(t, e, name, "/"); res.StatusCode != 200 || body != "hello "+name {
		t.Fatalf("%s: %q", res.Status, body)
	}
	if _, err := e.Handshake("exact.example.test"); err != nil || p.Orders() != 2 {
		t.Fatalf("exact name: %v, orders %d", err, p.Orders())
	}
	if _, err := e.Handshake("evil.example.test"); err == nil || p.Orders() != 2 {
		t.Fatalf("after issuance, a refused name: %v, orders %d", err, p.Orders())
	}
}

func TestReplicasShareFileStorage(t *testing.T) {
	dir := t.TempDir()
	acmetest.ReplicasShareStorage(t, func(*testing.T) certmagic.Storage { return certs.FileStorage(dir) })
}

// TestHSTSOnlyOverTLS: the HTTPS listener's responses carry the policy; the
// plain-HTTP listener's never do.
func TestHSTSOnlyOverTLS(t *testing.T) {
	const name = "hsts.example.test"
	httpPort, tlsPort := acmetest.FreePorts(t)
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: httpPort, TLSPort: tlsPort})
	year := config.Duration(365 * 24 * time.Hour)
	e := acmetest.StartEdge(t, p, httpPort, tlsPort, acmetest.EdgeConfig{
		ACME: config.ACME{Domains: []string{name}}, Storage: certs.FileStorage(t.TempDir()),
		HSTS: &config.HSTS{MaxAge: &year, IncludeSubDomains: true, Preload: true}})
	e.WaitCertificate(t, name, issuance)
	res, _ := get(t, e, name, "/")
	if got := res.Header.Get("Strict-Transport-Security"); got != "max-age=31536000; includeSubDomains; preload" {
		t.Fatalf("HTTPS: Strict-Transport-Security %q", got)
	}
	res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).
		Get("http://" + e.HTTP.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if v, ok := res.Header["Strict-Transport-Security"]; ok || !strings.HasPrefix(res.Header.Get("Location"), "https://") {
		t.Fatalf("plain HTTP: Strict-Transport-Security %q, Location %q", v, res.Header.Get("Location"))
	}
}

// TestReplicasShareControlPlaneStore: the same two replicas sharing certificates,
// the ACME account and the issuance lock through the control plane's store (an
// embedded etcd member) instead of a shared directory: one order, one certificate.
func TestReplicasShareControlPlaneStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	acmetest.ReplicasShareStorage(t, func(*testing.T) certmagic.Storage { return certstorage.New(st, "certs/") })
}
