package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/internal/testutil"
)

// unreachable is a directory URL nothing answers: these tests never reach a CA.
const unreachable = "https://127.0.0.1:1/directory"

func testOptions(t *testing.T) Options {
	return Options{Storage: FileStorage(t.TempDir()), HTTPChallengeAddr: "127.0.0.1:8080", TLSALPNChallengeAddr: "127.0.0.1:8443"}
}

func TestNewErrors(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "root.pem")
	os.WriteFile(notPEM, []byte("not pem"), 0o600)
	ok := config.ACME{Directory: unreachable, Domains: []string{"a.example.test"}}
	for _, c := range []struct {
		name string
		edit func(*config.ACME, *Options)
		want string
	}{
		{"no directory", func(a *config.ACME, _ *Options) { a.Directory = "" }, "tls.acme.directory: required"},
		{"no storage", func(_ *config.ACME, o *Options) { o.Storage = nil }, "tls.acme.storage: "},
		{"missing root", func(a *config.ACME, _ *Options) { a.CARootFile = "/missing-root.pem" }, "tls.acme.caRootFile: open /missing-root.pem"},
		{"root not PEM", func(a *config.ACME, _ *Options) { a.CARootFile = notPEM }, "tls.acme.caRootFile: no PEM certificate"},
		{"unknown challenge", func(a *config.ACME, _ *Options) { a.Challenges = []string{"TLSALPN01", "DNS01"} }, "tls.acme.challenges[1]: \"DNS01\""},
		{"no listener for the only challenge", func(a *config.ACME, o *Options) {
			a.Challenges = []string{config.ChallengeHTTP01}
			o.HTTPChallengeAddr = ""
		}, "tls.acme.challenges: no listener can answer"},
		{"no listener at all", func(_ *config.ACME, o *Options) { o.HTTPChallengeAddr, o.TLSALPNChallengeAddr = "", "" }, "tls.acme.challenges: "},
		{"port zero", func(_ *config.ACME, o *Options) { o.TLSALPNChallengeAddr = "127.0.0.1:0" }, "TLS-ALPN-01 listener address: "},
		{"bad pattern", func(a *config.ACME, _ *Options) {
			a.OnDemand = &config.OnDemand{Allow: []string{"ok.example.test", "a.*.example.test"}}
		},
			"tls.acme.onDemand.allow[1]: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, o := ok, testOptions(t)
			c.edit(&a, &o)
			m, err := New(a, o)
			if err == nil {
				m.Close()
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("error %q, want prefix %q", err, c.want)
			}
		})
	}
}

func TestAllowList(t *testing.T) {
	a, err := compileAllowList("allow", []string{"shop.example.test", "*.Tenants.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	a.add([]string{"api.example.test."})
	for name, want := range map[string]bool{
		"shop.example.test":         true,
		"SHOP.example.test.":        true,
		"api.example.test":          true, // from domains
		"a.tenants.example.test":    true,
		"tenants.example.test":      false, // the wildcard is one label, not zero
		"a.b.tenants.example.test":  false, // nor two
		".tenants.example.test":     false,
		"evil.example.test":         false,
		"shop.example.test.evil.io": false,
		"":                          false,
	} {
		if got := a.allows(name); got != want {
			t.Errorf("allows(%q) = %v, want %v", name, got, want)
		}
	}
	for _, bad := range []string{"*", "*.", "a*.example.test", "*.*.example.test", "a..example.test", ""} {
		if _, err := compileAllowList("allow", []string{bad}); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

// TestOnDemandDecision: the allow-list alone decides, and only while the
// Manager runs.
func TestOnDemandDecision(t *testing.T) {
	m, err := New(config.ACME{Directory: unreachable, OnDemand: &config.OnDemand{Allow: []string{"*.example.test"}}}, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.decide(t.Context(), "a.example.test"); err == nil {
		t.Fatal("allowed before Start")
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.decide(t.Context(), "a.example.test"); err != nil {
		t.Fatalf("allowed name refused: %v", err)
	}
	if err := m.decide(t.Context(), "a.example.org"); err == nil || !strings.Contains(err.Error(), "tls.acme.onDemand.allow") {
		t.Fatalf("other name: %v", err)
	}
	// A name outside the list fails its handshake before anything is asked of
	// the CA (which does not exist here).
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.org"}); err == nil {
		t.Fatal("certificate for a name outside the allow-list")
	}
	if m.Start() == nil {
		t.Fatal("second Start succeeded")
	}
	m.Close()
	m.Close() // idempotent
	if err := m.decide(t.Context(), "a.example.test"); err == nil {
		t.Fatal("allowed after Close")
	}
}

// TestStartDoesNotWait: with a CA that cannot be reached, Start returns at once
// and the failure shows in Status and Stats (and the log) while certmagic retries.
func TestStartDoesNotWait(t *testing.T) {
	var logBuf testutil.SyncBuffer
	o := testOptions(t)
	o.Logger = slog.New(slog.NewJSONHandler(&logBuf, nil))
	m, err := New(config.ACME{Directory: unreachable, Domains: []string{"down.example.test"}}, o)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	start := time.Now()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Start took %s", d)
	}
	if st := m.Status(); len(st) != 1 || st[0].Name != "down.example.test" || st[0].State != StatePending {
		t.Fatalf("status right after Start: %+v", st)
	}
	deadline := time.Now().Add(15 * time.Second)
	for m.Stats().Failed == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no failure reported; status %+v", m.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := m.Status()
	if st[0].State != StateFailed || !strings.Contains(st[0].LastError, "127.0.0.1:1") || !st[0].NotAfter.IsZero() {
		t.Fatalf("status after the failure: %+v", st)
	}
	if !strings.Contains(logBuf.String(), `"msg":"obtaining a certificate failed; will retry"`) {
		t.Fatalf("the failure is not in the log:\n%s", logBuf.String())
	}
}

// TestRenewBeforeWindow: renewBefore becomes each certificate's renewal window
// as a share of its own lifetime.
func TestRenewBeforeWindow(t *testing.T) {
	month := config.Duration(30 * 24 * time.Hour)
	m, err := New(config.ACME{Directory: unreachable, Domains: []string{"a.example.test"}, RenewBefore: &month}, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cert := func(days int) certmagic.Certificate {
		now := time.Now()
		return certmagic.Certificate{Certificate: tls.Certificate{Leaf: &x509.Certificate{NotBefore: now, NotAfter: now.Add(time.Duration(days)*24*time.Hour - time.Second)}}}
	}
	for _, c := range []struct {
		days int
		want float64
	}{{90, 0.34}, {45, 0.67}, {10, 0.99}, {365 * 10, 0.01}} {
		cfg, err := m.configForCert(cert(c.days))
		if err != nil || cfg.RenewalWindowRatio != c.want {
			t.Errorf("%d-day certificate: ratio %v, %v; want %v", c.days, cfg.RenewalWindowRatio, err, c.want)
		}
	}
	a, _ := m.configForCert(cert(90))
	b, _ := m.configForCert(cert(90))
	if a != b || a == m.managed || a.OnDemand != nil {
		t.Fatal("configs are not reused per window, or one has on-demand set")
	}
	if m.managed.RenewalWindowRatio != 1.0/50 {
		t.Fatalf("shared config window %v", m.managed.RenewalWindowRatio)
	}
}

func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	zl := newZapLogger(h).Named("obtain").With(zap.String("identifier", "a.example.test"))
	zl.Debug("hidden")
	zl.Warn("lock acquired", zap.Int("attempt", 2), zap.Error(errors.New("boom")))
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %q", err, buf.String())
	}
	for k, want := range map[string]any{"level": "WARN", "msg": "lock acquired", "certmagic": "obtain",
		"identifier": "a.example.test", "attempt": float64(2), "error": "boom"} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %v (record %s)", k, rec[k], want, buf.String())
		}
	}
}
