package credexchange_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/credexchange/credexchangetest"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	_ "github.com/portcullis/portcullis/gateway/filters/credexchange"
	"github.com/portcullis/portcullis/internal/testutil"
)

const (
	callerA = "spiffe://corp.example/ns/shop/sa/orders"
	callerB = "spiffe://corp.example/ns/billing/sa/invoices"
	callerC = "spiffe://corp.example/ns/other/sa/stranger"
)

// secretFile writes content to a new 0600 file.
func secretFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// upstream is a real server that records what reached it.
type upstream struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []*http.Request
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.got = append(u.got, r)
		u.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) last(t *testing.T) *http.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	return u.got[len(u.got)-1]
}

// forward is the chain's terminal: it sends the filtered request to the upstream.
func (u *upstream) forward() filter.Handler {
	return filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		out, err := http.NewRequestWithContext(r.Context(), r.Method, u.srv.URL+r.URL.RequestURI(), nil)
		if err != nil {
			return err
		}
		out.Header = r.Header.Clone()
		out.Host = r.Host
		resp, err := http.DefaultClient.Do(out)
		if err != nil {
			return err
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		return nil
	})
}

type env struct {
	f    filter.Filter
	up   *upstream
	logs *testutil.SyncBuffer
}

func newEnv(t *testing.T, cfg string) *env {
	t.Helper()
	e := &env{up: newUpstream(t), logs: &testutil.SyncBuffer{}}
	e.f = filtertest.MustBuild(t, "credexchange", cfg,
		filtertest.WithBuild(func(b *filter.Build) { b.Logger = slog.New(slog.NewTextHandler(e.logs, nil)) }),
		filtertest.WithBuilt(func(t testing.TB, f filter.Filter) {
			t.Cleanup(func() { f.(interface{ Close() error }).Close() })
		}))
	return e
}

// do sends one request from caller ("" none) to host, with extra headers.
func (e *env) do(t *testing.T, caller, host, target string, hdr map[string]string) (int, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://"+host+target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	if caller != "" {
		r = filter.WithIdentity(r, &filter.Identity{Source: "jwt", Subject: caller})
	}
	w := httptest.NewRecorder()
	err := e.f.Handle(w, r, e.up.forward())
	if err != nil {
		st, _ := filter.StatusOf(err)
		return st, err
	}
	return w.Code, nil
}

func TestAPIKeyPerCaller(t *testing.T) {
	keyA, keyB := secretFile(t, "a", "key-AAAA-secret"), secretFile(t, "b", "key-BBBB-secret")
	e := newEnv(t, fmt.Sprintf(`
credentials:
  - match: {callers: [%q], hosts: [api.partner.example]}
    inject: {apiKey: {header: X-API-Key, valueFile: %s}}
  - match: {callers: ["spiffe://corp.example/ns/billing/*"]}
    inject: {apiKey: {query: api_key, valueFile: %s}}
`, callerA, keyA, keyB))

	for _, tc := range []struct {
		name, caller, host    string
		wantHeader, wantQuery string
	}{
		{"A gets key A", callerA, "api.partner.example", "key-AAAA-secret", ""},
		{"A elsewhere gets nothing", callerA, "other.example", "", ""},
		{"B gets key B by prefix", callerB, "api.partner.example", "", "key-BBBB-secret"},
		{"unmatched gets nothing", callerC, "api.partner.example", "", ""},
		{"anonymous gets nothing", "", "api.partner.example", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := e.do(t, tc.caller, tc.host, "/v1/charge?api_key=smuggled&x=1", map[string]string{
				"Authorization": "Bearer internal-mesh-token", "X_API_Key": "smuggled",
			})
			if err != nil || code != http.StatusNoContent {
				t.Fatalf("status %d, %v", code, err)
			}
			got := e.up.last(t)
			if v := got.Header.Get("X-Api-Key"); v != tc.wantHeader {
				t.Errorf("X-API-Key = %q, want %q", v, tc.wantHeader)
			}
			if v := got.Header.Get("X_API_Key"); v != "" {
				t.Errorf("caller-sent X_API_Key reached the upstream: %q", v)
			}
			if v := got.URL.Query().Get("api_key"); v != tc.wantQuery {
				t.Errorf("api_key = %q, want %q", v, tc.wantQuery)
			}
			if got.URL.Query().Get("x") != "1" {
				t.Errorf("other query parameters lost: %s", got.URL.RawQuery)
			}
			if v := got.Header.Get("Authorization"); v != "" {
				t.Errorf("the caller's Authorization reached the upstream: %q", v)
			}
		})
	}
	if strings.Contains(e.logs.String(), "secret") {
		t.Errorf("a key reached the log:\n%s", e.logs.String())
	}
}

func TestRequireMatch(t *testing.T) {
	e := newEnv(t, fmt.Sprintf(`
requireMatch: true
credentials:
  - match: {callers: [%q]}
    inject: {bearer: {tokenFile: %s}}
`, callerA, secretFile(t, "tok", "static-bearer")))
	if code, err := e.do(t, callerC, "api.example", "/", nil); code != http.StatusForbidden {
		t.Fatalf("unmatched caller: %d %v, want 403", code, err)
	}
	if code, _ := e.do(t, callerA, "api.example", "/", nil); code != http.StatusNoContent {
		t.Fatalf("matched caller: %d", code)
	}
	if v := e.up.last(t).Header.Get("Authorization"); v != "Bearer static-bearer" {
		t.Fatalf("Authorization = %q", v)
	}
}

func TestBasicAndPeerSPIFFEID(t *testing.T) {
	e := newEnv(t, fmt.Sprintf(`
credentials:
  - match: {callers: [%q]}
    inject: {basic: {usernameFile: %s, passwordFile: %s}}
`, callerA, secretFile(t, "u", "shop"), secretFile(t, "p", "pa55word")))
	r := httptest.NewRequest(http.MethodGet, "http://api.example/", nil)
	// The caller known only by its mTLS client certificate.
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{mustURL(t, callerA)}}}}
	r.Header.Set("Authorization", "Basic c211Z2dsZWQ6eA==")
	if err := e.f.Handle(httptest.NewRecorder(), r, e.up.forward()); err != nil {
		t.Fatal(err)
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("shop:pa55word"))
	if v := e.up.last(t).Header.Get("Authorization"); v != want {
		t.Fatalf("Authorization = %q, want %q", v, want)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func oauthConfig(t *testing.T, ts *credexchangetest.TokenServer) string {
	return fmt.Sprintf(`
credentials:
  - match: {callers: ["*"]}
    inject:
      oauth2ClientCredentials:
        tokenURL: %s
        clientIDFile: %s
        clientSecretFile: %s
        scopes: [payments.write]
        timeout: 5s
`, ts.TokenURL(), secretFile(t, "id", ts.ClientID), secretFile(t, "secret", ts.ClientSecret))
}

func TestOAuth2ClientCredentials(t *testing.T) {
	ts := credexchangetest.NewTokenServer(t, "egress-client", "client-s3cret-value")
	e := newEnv(t, oauthConfig(t, ts))

	// Concurrent first requests: one fetch.
	release := ts.Hold()
	var wg sync.WaitGroup
	codes := make([]int, 16)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = e.do(t, callerA, "api.example", "/", map[string]string{"Authorization": "Bearer mesh-token"})
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for ts.Hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	release()
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusNoContent {
			t.Fatalf("request %d: %d", i, c)
		}
	}
	for range 5 {
		if code, err := e.do(t, callerB, "api.example", "/", nil); code != http.StatusNoContent {
			t.Fatalf("%d %v", code, err)
		}
	}
	if h := ts.Hits.Load(); h != 1 {
		t.Fatalf("token endpoint hit %d times for 21 requests, want 1", h)
	}
	auth := e.up.last(t).Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if g, issued := ts.Issued(tok); !ok || !issued || g.Scope != "payments.write" {
		t.Fatalf("upstream got %q, not a token the endpoint issued for the scope", auth)
	}
	// The endpoint going down does not matter while the token is valid.
	ts.SetDown(true)
	if code, err := e.do(t, callerA, "api.example", "/", nil); code != http.StatusNoContent {
		t.Fatalf("with a cached token and the endpoint down: %d %v", code, err)
	}
	for _, s := range []string{"client-s3cret-value", tok, "mesh-token"} {
		if strings.Contains(e.logs.String(), s) {
			t.Errorf("a secret reached the log:\n%s", e.logs.String())
		}
	}
}

func TestOAuth2EndpointDownWithoutToken(t *testing.T) {
	ts := credexchangetest.NewTokenServer(t, "egress-client", "client-s3cret-value")
	ts.SetDown(true)
	e := newEnv(t, oauthConfig(t, ts))
	code, err := e.do(t, callerA, "api.example", "/", nil)
	if code != http.StatusBadGateway || !strings.Contains(err.Error(), "credexchange_token_unavailable") ||
		!strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("want 502 naming the endpoint's 503, got %d %v", code, err)
	}
	if strings.Contains(err.Error(), "client-s3cret-value") || strings.Contains(e.logs.String(), "client-s3cret-value") {
		t.Errorf("the client secret leaked: %v\n%s", err, e.logs.String())
	}
	if !strings.Contains(e.logs.String(), "no token for the request") {
		t.Errorf("the failure was not logged:\n%s", e.logs.String())
	}
}

func TestTokenExchange(t *testing.T) {
	ts := credexchangetest.NewTokenServer(t, "egress-client", "client-s3cret-value")
	e := newEnv(t, fmt.Sprintf(`
credentials:
  - match: {callers: [%q]}
    inject:
      tokenExchange:
        tokenURL: %s
        clientIDFile: %s
        clientSecretFile: %s
        audience: https://api.partner.example
        subjectTokenFrom: callerToken
`, callerA, ts.TokenURL(), secretFile(t, "id", ts.ClientID), secretFile(t, "secret", ts.ClientSecret)))
	if code, _ := e.do(t, callerA, "api.partner.example", "/", map[string]string{"Authorization": "Bearer caller-jwt-1"}); code != http.StatusNoContent {
		t.Fatalf("%d", code)
	}
	tok, _ := strings.CutPrefix(e.up.last(t).Header.Get("Authorization"), "Bearer ")
	g, ok := ts.Issued(tok)
	if !ok || g.SubjectToken != "caller-jwt-1" || g.Audience != "https://api.partner.example" {
		t.Fatalf("upstream token %q was not exchanged for the caller's: %+v", tok, g)
	}
	if code, err := e.do(t, callerA, "api.partner.example", "/", nil); code != http.StatusUnauthorized {
		t.Fatalf("no caller token: %d %v, want 401", code, err)
	}
}

func slogTo(w *testutil.SyncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
