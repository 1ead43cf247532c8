package oidc_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	"github.com/portcullis/portcullis/gateway/filters/oidc"
	"github.com/portcullis/portcullis/internal/testutil"
)

// signingKey is made once per test binary: RSA generation is slow under -race.
var signingKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// idp is a real mockoidc provider on 127.0.0.1 that counts what it is asked.
type idp struct {
	*mockoidc.MockOIDC
	discoveries, authorizes, codeGrants, refreshGrants atomic.Int64
	down                                               atomic.Bool // answer 503 to everything
}

type idpOpts struct {
	accessTTL  time.Duration // default mockoidc's 10m
	endSession bool          // announce an end_session_endpoint in discovery
}

func newIdP(t testing.TB, o idpOpts) *idp {
	t.Helper()
	m, err := mockoidc.NewServer(signingKey())
	if err != nil {
		t.Fatal(err)
	}
	if o.accessTTL != 0 {
		m.AccessTTL = o.accessTTL
	}
	p := &idp{MockOIDC: m}
	err = m.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case mockoidc.DiscoveryEndpoint:
				p.discoveries.Add(1)
			case mockoidc.AuthorizationEndpoint:
				p.authorizes.Add(1)
			case mockoidc.TokenEndpoint:
				if err := r.ParseForm(); err == nil { // mockoidc's own ParseForm then finds it done
					switch r.PostForm.Get("grant_type") {
					case "authorization_code":
						p.codeGrants.Add(1)
					case "refresh_token":
						p.refreshGrants.Add(1)
					}
				}
			}
			if p.down.Load() {
				http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
				return
			}
			if o.endSession && r.URL.Path == mockoidc.DiscoveryEndpoint {
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				var doc map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				doc["end_session_endpoint"] = p.Addr() + "/oidc/logout"
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(doc)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return p
}

// secrets writes the client secret and a cookie secret into files, returning
// their paths.
func secrets(t testing.TB, clientSecret string) (client, cookie string) {
	dir := t.TempDir()
	client, cookie = filepath.Join(dir, "client-secret"), filepath.Join(dir, "cookie-secret")
	if err := os.WriteFile(client, []byte(clientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cookie, []byte(rand.Text()+rand.Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return client, cookie
}

// setup is one filter config against a provider.
type setup struct {
	p            *idp
	clientSecret string // file
	cookieSecret string // file
	extra        string // more top-level lines
	cookieExtra  string // more lines under cookie:, indented by two
}

func (s setup) config() string {
	return fmt.Sprintf(`issuer: %s
clientID: %s
clientSecretFile: %s
cookie:
  secretFile: %s
%sclaimsToHeaders:
  - {claim: sub, header: X-User}
  - {claim: email, header: X-Email}
%s`, s.p.Issuer(), s.p.ClientID, s.clientSecret, s.cookieSecret, s.cookieExtra, s.extra)
}

func newSetup(t testing.TB, p *idp) setup {
	c, k := secrets(t, p.ClientSecret)
	return setup{p: p, clientSecret: c, cookieSecret: k}
}

// events is a fake core event sink.
type events struct {
	mu  sync.Mutex
	got []string // "kind remote detail"
}

func (e *events) SecurityEvent(kind, remote, detail string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, kind+" "+remote+" "+detail)
}

func (e *events) all() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.got, "\n")
}

// clock is a filter clock tests can move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// built is a filter with its event sink and clock.
type built struct {
	filter.Filter
	ev  *events
	clk *clock
	log *testutil.SyncBuffer
}

// build builds an oidc filter (closed when the test ends) with a fake event sink,
// a logger into a buffer and a movable clock.
func build(t testing.TB, cfg string) built {
	t.Helper()
	b := built{ev: &events{}, clk: &clock{}, log: &testutil.SyncBuffer{}}
	logger := slog.New(slog.NewTextHandler(b.log, nil))
	f, err := filtertest.Build(t, oidc.Type, cfg,
		filtertest.WithBuild(func(fb *filter.Build) { fb.Events, fb.Logger = b.ev, logger }),
		filtertest.WithBuilt(func(t testing.TB, f filter.Filter) { t.Cleanup(func() { closeFilter(t, f) }) }))
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	oidc.SetClock(f, b.clk.now)
	b.Filter = f
	return b
}

func closeFilter(t testing.TB, f filter.Filter) {
	c, ok := f.(io.Closer)
	if !ok {
		t.Fatal("the filter does not implement io.Closer; its discovery would outlive the snapshot")
	}
	c.Close()
}

// seen is what the upstream received.
type seen struct {
	path   string
	header http.Header
	id     *filter.Identity
}

// gateway is an https server running filters the way the core does: the first
// route whose prefix matches runs its filter in front of an upstream that records
// what it got, and an error is answered with its status and reason. An error that
// is not a *filter.Error (the core would answer 500) fails the test.
type gateway struct {
	*httptest.Server
	mu       sync.Mutex
	requests []seen
	bugs     []string
}

type route struct {
	prefix string
	f      filter.Filter
}

func newGateway(t testing.TB, routes ...route) *gateway {
	g := &gateway{}
	upstream := filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		id, _ := filter.IdentityFrom(r.Context())
		g.mu.Lock()
		g.requests = append(g.requests, seen{path: r.URL.RequestURI(), header: r.Header.Clone(), id: id})
		g.mu.Unlock()
		// Replace Set-Cookie the way the proxy copies an upstream's header.
		w.Header()["Set-Cookie"] = []string{"app=1; Path=/"}
		w.WriteHeader(http.StatusOK)
		sub := "anonymous"
		if id != nil {
			sub = id.Subject
		}
		fmt.Fprintf(w, "hello %s at %s", sub, r.URL.RequestURI())
		return nil
	})
	g.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, rt := range routes {
			if !strings.HasPrefix(r.URL.Path, rt.prefix) {
				continue
			}
			err := filter.Chain([]filter.Filter{rt.f}, upstream).ServeHTTP(w, r)
			if err == nil {
				return
			}
			var fe *filter.Error
			if !errors.As(err, &fe) {
				g.mu.Lock()
				g.bugs = append(g.bugs, fmt.Sprintf("%s %s: %v", r.Method, r.URL, err))
				g.mu.Unlock()
			}
			st, reason := filter.StatusOf(err)
			w.Header().Set("X-Reason", reason)
			w.WriteHeader(st)
			fmt.Fprintln(w, reason)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(func() {
		g.Close()
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, b := range g.bugs {
			t.Errorf("the filter returned an error that is not a *filter.Error (500): %s", b)
		}
	})
	return g
}

// last returns what the upstream saw last, or fails the test.
func (g *gateway) last(t testing.TB) seen {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.requests) == 0 {
		t.Fatal("no request reached the upstream")
	}
	return g.requests[len(g.requests)-1]
}

func (g *gateway) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.requests)
}

// browser is a real http.Client with a cookie jar that follows redirects across
// the gateway and the provider, recording every hop.
type browser struct {
	t    testing.TB
	gw   *gateway
	jar  *cookiejar.Jar
	c    *http.Client
	hops []*http.Request
	// stop, when set, ends the redirects at the first hop it returns true for;
	// the response that redirected there is returned.
	stop func(*http.Request) bool
}

func newBrowser(t testing.TB, gw *gateway) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, gw: gw, jar: jar}
	b.c = &http.Client{
		Jar:       jar,
		Transport: gw.Client().Transport, // trusts the gateway's test certificate
		Timeout:   10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			b.hops = append(b.hops, req)
			if len(via) >= 10 {
				return errors.New("redirect loop")
			}
			if b.stop != nil && b.stop(req) {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	return b
}

// response is a finished request: status, headers, body.
type response struct {
	*http.Response
	body string
}

// do sends a request to the gateway (a path) or anywhere (an absolute URL).
func (b *browser) do(method, target, accept string, hdr http.Header) response {
	b.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.gw.URL + target
	}
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	b.hops = nil
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return response{Response: resp, body: string(body)}
}

const html = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"

// page loads a page as a browser does (GET, HTML acceptable), following redirects.
func (b *browser) page(path string) response { return b.do(http.MethodGet, path, html, nil) }

// api calls an API (GET, JSON), following redirects.
func (b *browser) api(path string) response {
	return b.do(http.MethodGet, path, "application/json", nil)
}

// noFollow runs fn with redirects not followed.
func (b *browser) noFollow(fn func()) {
	b.stop = func(*http.Request) bool { return true }
	defer func() { b.stop = nil }()
	fn()
}

// cookie returns the jar's value of a gateway cookie, "" when absent.
func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.gw.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// cookieNames lists the gateway cookies the jar holds.
func (b *browser) cookieNames() []string {
	u, _ := url.Parse(b.gw.URL)
	var out []string
	for _, c := range b.jar.Cookies(u) {
		out = append(out, c.Name)
	}
	return out
}

// setCookie puts a cookie into the jar for the gateway, as its server would.
func (b *browser) setCookie(c *http.Cookie) {
	u, _ := url.Parse(b.gw.URL)
	b.jar.SetCookies(u, []*http.Cookie{c})
}

// hopTo returns the first recorded hop whose URL starts with prefix, or nil.
func (b *browser) hopTo(prefix string) *http.Request {
	for _, h := range b.hops {
		if strings.HasPrefix(h.URL.String(), prefix) {
			return h
		}
	}
	return nil
}

const sessionCookie = oidc.DefaultCookieName

// wantStatus fails the test unless resp has the status (and, for errors, the
// reason).
func wantStatus(t testing.TB, r response, status int, reason string) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("status %d (%s), want %d; body %q", r.StatusCode, r.Header.Get("X-Reason"), status, r.body)
	}
	if reason != "" && r.Header.Get("X-Reason") != reason {
		t.Fatalf("reason %q, want %q", r.Header.Get("X-Reason"), reason)
	}
}

// login runs a full login from a page load and fails unless it ends on the page.
func login(t testing.TB, b *browser, path string) response {
	t.Helper()
	r := b.page(path)
	wantStatus(t, r, http.StatusOK, "")
	if b.hopTo(b.gw.URL+oidc.DefaultRedirectPath) == nil {
		t.Fatalf("the page was served without a login; hops %v", b.hops)
	}
	return r
}

// waitFor polls cond every 20 ms for up to 10 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
