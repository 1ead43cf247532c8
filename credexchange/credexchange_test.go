package credexchange_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cx "github.com/portcullis/portcullis/credexchange"
	"github.com/portcullis/portcullis/credexchange/credexchangetest"
	"github.com/portcullis/portcullis/internal/testutil"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newSource(t *testing.T, ts *credexchangetest.TokenServer, clk *fakeClock, log *slog.Logger) *cx.ClientCredentials {
	t.Helper()
	src, err := cx.NewClientCredentials(cx.OAuth2{
		TokenURL: ts.TokenURL(), ClientID: cx.NewSecret(ts.ClientID), ClientSecret: cx.NewSecret(ts.ClientSecret),
		Scopes: []string{"payments"}, Now: clk.Now, Logger: log, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestClientCredentialsCachesAndRefreshes(t *testing.T) {
	ts := credexchangetest.NewTokenServer(t, "egress", "s3cret-client")
	ts.SetExpiresIn(600) // refresh due at 600s-60s, unusable from 590s
	clk := &fakeClock{t: time.Now()}
	src := newSource(t, ts, clk, nil)
	ctx := context.Background()

	first, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := ts.Issued(first.Value.Reveal()); !ok || g.Type != "client_credentials" || g.Scope != "payments" {
		t.Fatalf("token not issued by the endpoint for the grant: %+v %v", g, ok)
	}
	clk.Add(500 * time.Second)
	for range 5 {
		if tok, err := src.Token(ctx); err != nil || tok.Value.Reveal() != first.Value.Reveal() {
			t.Fatalf("cached token not reused: %v", err)
		}
	}
	if n := ts.Hits.Load(); n != 1 {
		t.Fatalf("token endpoint hit %d times, want 1", n)
	}

	// In the refresh window: the old token is still handed out, a new one is
	// fetched in the background.
	clk.Add(50 * time.Second)
	if tok, err := src.Token(ctx); err != nil || tok.Value.Reveal() != first.Value.Reveal() {
		t.Fatalf("in the refresh window: %v, same token %v", err, tok.Value.Reveal() == first.Value.Reveal())
	}
	waitFor(t, "the background refresh", func() bool { return ts.Hits.Load() == 2 })
	waitFor(t, "the refreshed token", func() bool {
		tok, err := src.Token(ctx)
		return err == nil && tok.Value.Reveal() != first.Value.Reveal()
	})

	// Past the usable end of the current token: fetched on demand.
	clk.Add(595 * time.Second)
	if _, err := src.Token(ctx); err != nil {
		t.Fatal(err)
	}
	if n := ts.Hits.Load(); n != 3 {
		t.Fatalf("token endpoint hit %d times, want 3", n)
	}
}

func TestClientCredentialsSingleFlight(t *testing.T) {
	ts := credexchangetest.NewTokenServer(t, "egress", "s3cret-client")
	src := newSource(t, ts, &fakeClock{t: time.Now()}, nil)
	release := ts.Hold()
	const n = 32
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := src.Token(context.Background())
			got[i], errs[i] = tok.Value.Reveal(), err
		}()
	}
	waitFor(t, "the first fetch", func() bool { return ts.Hits.Load() >= 1 })
	release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != got[0] || got[i] == "" {
			t.Fatalf("caller %d: %q, %v (caller 0: %q)", i, got[i], errs[i], got[0])
		}
	}
	if h := ts.Hits.Load(); h != 1 {
		t.Fatalf("%d concurrent callers caused %d fetches, want 1", n, h)
	}
}

func TestClientCredentialsEndpointDown(t *testing.T) {
	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ts := credexchangetest.NewTokenServer(t, "egress", "s3cret-client")
	ts.SetExpiresIn(600)
	clk := &fakeClock{t: time.Now()}
	src := newSource(t, ts, clk, log)
	first, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ts.SetDown(true)
	clk.Add(560 * time.Second) // refresh due, still usable
	for i := range 3 {
		tok, err := src.Token(context.Background())
		if err != nil || tok.Value.Reveal() != first.Value.Reveal() {
			t.Fatalf("request %d with a valid cached token and the endpoint down: %v", i, err)
		}
		waitFor(t, "the refresh attempt", func() bool { return ts.Hits.Load() >= 2 })
	}
	waitFor(t, "the refresh warning", func() bool { return strings.Contains(logs.String(), "refreshing a token failed") })
	if h := ts.Hits.Load(); h > 2 {
		t.Errorf("the failed refresh was retried %d times inside its back-off", h-2)
	}

	clk.Add(40 * time.Second) // past expiry: nothing usable
	_, err = src.Token(context.Background())
	var fe *cx.FetchError
	if !errors.As(err, &fe) || fe.Status != http.StatusServiceUnavailable {
		t.Fatalf("want a FetchError with status 503, got %v", err)
	}
	for _, secret := range []string{"s3cret-client", first.Value.Reveal()} {
		if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
			t.Errorf("a secret leaked into the error or the log: %v\n%s", err, logs.String())
		}
	}
}

func TestFetchErrors(t *testing.T) {
	ts := credexchangetest.NewTokenServer(t, "egress", "right")
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"%s","token_type":"Bearer"}`, strings.Repeat("x", cx.MaxTokenResponseSize))
	}))
	t.Cleanup(big.Close)
	redirect := httptest.NewServer(http.RedirectHandler(ts.TokenURL(), http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	for _, tc := range []struct {
		name, url, secret string
		want              string
	}{
		{"wrong secret", ts.TokenURL(), "wrong-secret-value", "HTTP 401 invalid_client"},
		{"oversized response", big.URL, "right", "larger than"},
		{"redirect not followed", redirect.URL, "right", "HTTP 307"},
		{"nothing listening", "http://127.0.0.1:1/token", "right", "token request to http://127.0.0.1:1/token failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := cx.NewClientCredentials(cx.OAuth2{TokenURL: tc.url, ClientID: cx.NewSecret("egress"), ClientSecret: cx.NewSecret(tc.secret)})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			_, err = src.Token(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Fatalf("error carries the client secret: %v", err)
			}
		})
	}
}

func TestTokenExchangePerSubject(t *testing.T) {
	ts := credexchangetest.NewTokenServer(t, "egress", "s3cret-client")
	clk := &fakeClock{t: time.Now()}
	src, err := cx.NewTokenExchange(cx.OAuth2{TokenURL: ts.TokenURL(), ClientID: cx.NewSecret("egress"),
		ClientSecret: cx.NewSecret("s3cret-client"), Audience: "https://api.partner.example", Now: clk.Now}, cx.ExchangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx := context.Background()
	a1, err := src.Token(ctx, "subject-a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := src.Token(ctx, "subject-a", time.Time{})
	b, _ := src.Token(ctx, "subject-b", clk.Now().Add(30*time.Second))
	if a1.Value.Reveal() != a2.Value.Reveal() || a1.Value.Reveal() == b.Value.Reveal() {
		t.Fatal("tokens are not cached per subject token")
	}
	g, ok := ts.Issued(b.Value.Reveal())
	if !ok || g.SubjectToken != "subject-b" || g.Audience != "https://api.partner.example" || !strings.HasSuffix(g.Type, "token-exchange") {
		t.Fatalf("grant %+v", g)
	}
	if h := ts.Hits.Load(); h != 2 {
		t.Fatalf("%d exchanges, want 2", h)
	}
	// The subject token expires at 30s: the exchanged one is not used past it.
	clk.Add(31 * time.Second)
	if b2, _ := src.Token(ctx, "subject-b", clk.Now().Add(time.Hour)); b2.Value.Reveal() == b.Value.Reveal() {
		t.Fatal("an exchanged token was used past its subject token's expiry")
	}
	if _, err := src.Token(ctx, "", time.Time{}); err == nil {
		t.Fatal("an empty subject token was exchanged")
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := cx.NewSecret("hunter2")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "s", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s), logs.String()} {
		if strings.Contains(out, "hunter2") || !strings.Contains(out, "[redacted]") {
			t.Errorf("secret shown: %s", out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Error("Reveal")
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sf, err := cx.ReadSecretFile(write("ok", "key-123\n", 0o600))
	if err != nil || sf.Secret.Reveal() != "key-123" || sf.Exposed {
		t.Fatalf("%+v %v", sf, err)
	}
	if sf, err := cx.ReadSecretFile(write("open", "key", 0o644)); err != nil || !sf.Exposed {
		t.Fatalf("a 0644 file is not reported as exposed: %v", err)
	}
	for name, content := range map[string]string{"empty": "\n", "split": "a\r\nX-Injected: b", "big": strings.Repeat("k", cx.MaxSecretFileSize+1)} {
		_, err := cx.ReadSecretFile(write(name, content, 0o600))
		if err == nil || strings.Contains(err.Error(), "X-Injected") || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCheckTokenURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://idp.example/token": true, "http://127.0.0.1:8080/token": true, "http://[::1]/t": true,
		"http://localhost/t": true, "http://idp.example/token": false, "ftp://x/y": false,
		"https://user:pw@idp.example/t": false, "https://idp.example/t#f": false, "/token": false,
	} {
		if err := cx.CheckTokenURL(u); (err == nil) != ok {
			t.Errorf("%s: %v", u, err)
		}
	}
}
