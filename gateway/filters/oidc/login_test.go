package oidc_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/portcullis/portcullis/gateway/filters/oidc"
)

// TestLogin runs the whole authorization-code flow with a real browser-like
// client: page → provider → callback → the page, served with the identity, and
// without the filter's cookies or the browser's credentials reaching the upstream.
func TestLogin(t *testing.T) {
	p := newIdP(t, idpOpts{})
	p.QueueUser(&mockoidc.MockUser{Subject: "alice", Email: "alice@example.com", EmailVerified: true})
	f := build(t, newSetup(t, p).config())
	gw := newGateway(t, route{"/", f})
	b := newBrowser(t, gw)
	b.setCookie(&http.Cookie{Name: "theme", Value: "dark", Path: "/"})

	r := login(t, b, "/app/page?x=1")
	if got := r.Request.URL.RequestURI(); got != "/app/page?x=1" {
		t.Errorf("the login ended at %s, want the page it started from", got)
	}
	if want := "hello alice at /app/page?x=1"; r.body != want {
		t.Errorf("body %q, want %q", r.body, want)
	}

	// The authorization request: code flow, PKCE S256, state and nonce.
	auth := b.hopTo(p.AuthorizationEndpoint())
	if auth == nil {
		t.Fatalf("no hop to the provider: %v", b.hops)
	}
	q := auth.URL.Query()
	for k, want := range map[string]string{
		"response_type": "code", "client_id": p.ClientID, "scope": "openid profile email",
		"redirect_uri": gw.URL + oidc.DefaultRedirectPath, "code_challenge_method": "S256",
	} {
		if q.Get(k) != want {
			t.Errorf("authorization request %s=%q, want %q", k, q.Get(k), want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(k)) < 20 {
			t.Errorf("authorization request %s=%q: missing or too short to be unguessable", k, q.Get(k))
		}
	}
	if q.Get("state") == q.Get("nonce") {
		t.Error("state and nonce are the same value")
	}

	// The callback's answer: the session cookie with its attributes, the flow
	// cookie deleted, nothing cacheable.
	back := b.hopTo(gw.URL + "/app/page")
	if back == nil || back.Response == nil {
		t.Fatalf("no redirect back to the page: %v", b.hops)
	}
	var session, flowDeleted bool
	for _, c := range back.Response.Header["Set-Cookie"] {
		switch {
		case strings.HasPrefix(c, sessionCookie+"="):
			session = true
			for _, attr := range []string{"Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=28800"} {
				if !strings.Contains(c, attr) {
					t.Errorf("session cookie without %s: ...%s", attr, c[strings.Index(c, ";"):])
				}
			}
			if strings.Contains(c, "Domain=") {
				t.Errorf("session cookie with a Domain (not host-only): ...%s", c[strings.Index(c, ";"):])
			}
		case strings.HasPrefix(c, sessionCookie+"-flow-") && strings.Contains(c, "Max-Age=0"):
			flowDeleted = true
		}
	}
	if !session || !flowDeleted {
		t.Errorf("callback Set-Cookie %.200q: want the session set and the flow cookie deleted", back.Response.Header["Set-Cookie"])
	}
	if cc := back.Response.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("callback Cache-Control %q, want no-store", cc)
	}
	if n := p.codeGrants.Load(); n != 1 {
		t.Errorf("%d code exchanges, want 1", n)
	}

	up := gw.last(t)
	if up.id == nil || up.id.Source != "oidc" || up.id.Subject != "alice" || up.id.Issuer != p.Issuer() {
		t.Fatalf("upstream identity %+v, want oidc/alice from %s", up.id, p.Issuer())
	}
	if up.id.Claims["email"] != "alice@example.com" || up.id.Claims["aud"] == nil {
		t.Errorf("identity claims %v: want the ID token's", up.id.Claims)
	}
	if up.header.Get("X-User") != "alice" || up.header.Get("X-Email") != "alice@example.com" {
		t.Errorf("claim headers X-User=%q X-Email=%q", up.header.Get("X-User"), up.header.Get("X-Email"))
	}
	if c := up.header.Get("Cookie"); c != "theme=dark" {
		t.Errorf("upstream Cookie %.80q, want only the application's cookie", c)
	}

	// A later request: no provider round trip, and forged credentials and
	// identity headers from the browser are removed.
	r = b.do(http.MethodGet, "/app/other", html, http.Header{
		"Authorization": {"Bearer forged"}, "X-User": {"mallory"}, "X_user": {"mallory"},
	})
	wantStatus(t, r, http.StatusOK, "")
	if len(b.hops) != 0 || p.authorizes.Load() != 1 {
		t.Errorf("a logged-in request went to the provider: hops %v, %d authorizations", b.hops, p.authorizes.Load())
	}
	up = gw.last(t)
	if a := up.header.Values("Authorization"); a != nil {
		t.Errorf("the browser's Authorization reached the upstream: %q", a)
	}
	if v := up.header.Values("X-User"); len(v) != 1 || v[0] != "alice" {
		t.Errorf("upstream X-User %q, want only the filter's", v)
	}
	if v := up.header.Values("X_user"); v != nil {
		t.Errorf("client-sent X_user reached the upstream: %q", v)
	}
	if c := up.header.Get("Cookie"); strings.Contains(c, sessionCookie) {
		t.Errorf("the session cookie reached the upstream: %.80q", c)
	}
}

// TestUnauthenticatedAPIRequests: without a session, only a page load is sent to
// the login; a script or a form post gets 401 with a challenge.
func TestUnauthenticatedAPIRequests(t *testing.T) {
	p := newIdP(t, idpOpts{})
	f := build(t, newSetup(t, p).config())
	gw := newGateway(t, route{"/", f})
	b := newBrowser(t, gw)
	for _, tc := range []struct{ method, accept string }{
		{http.MethodGet, "application/json"},
		{http.MethodGet, "*/*"},
		{http.MethodPost, html},
		{http.MethodHead, html},
	} {
		r := b.do(tc.method, "/api/orders", tc.accept, nil)
		wantStatus(t, r, http.StatusUnauthorized, "oidc_no_session")
		if ch := r.Header.Get("Www-Authenticate"); !strings.HasPrefix(ch, `Cookie realm="portcullis"`) {
			t.Errorf("%s %s: challenge %q", tc.method, tc.accept, ch)
		}
		if len(b.hops) != 0 {
			t.Errorf("%s %s: redirected: %v", tc.method, tc.accept, b.hops)
		}
	}
	if p.authorizes.Load() != 0 || gw.count() != 0 {
		t.Errorf("%d authorizations, %d upstream requests; want none", p.authorizes.Load(), gw.count())
	}
	if ev := f.ev.all(); strings.Count(ev, "oidc_no_session") != 4 {
		t.Errorf("security events %q: want one per refusal", ev)
	}
}

// startFlow loads a page and stops at the provider's redirect to the callback,
// returning the callback URL (with code and state). The flow cookie is in the jar.
func startFlow(t *testing.T, b *browser) *url.URL {
	t.Helper()
	b.stop = func(req *http.Request) bool {
		return strings.HasPrefix(req.URL.String(), b.gw.URL+oidc.DefaultRedirectPath)
	}
	defer func() { b.stop = nil }()
	r := b.page("/start")
	wantStatus(t, r, http.StatusFound, "")
	cb, err := url.Parse(r.Header.Get("Location"))
	if err != nil || cb.Query().Get("code") == "" || cb.Query().Get("state") == "" {
		t.Fatalf("the provider's redirect %q has no code and state", r.Header.Get("Location"))
	}
	return cb
}

func withQuery(u *url.URL, set map[string]string) string {
	c := *u
	q := c.Query()
	for k, v := range set {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	c.RawQuery = q.Encode()
	return c.String()
}

// TestCallbackRefusals: every way a callback can be wrong is refused with 400 or
// 401 and a reason, never a session and never a 500.
func TestCallbackRefusals(t *testing.T) {
	p := newIdP(t, idpOpts{})
	s := newSetup(t, p)
	// fresh gives each case its own filter (some move its clock) and browser.
	fresh := func(t *testing.T) (built, *browser) {
		f := build(t, s.config())
		return f, newBrowser(t, newGateway(t, route{"/", f}))
	}
	refused := func(t *testing.T, b *browser, target string, status int, reason string) {
		t.Helper()
		var r response
		b.noFollow(func() { r = b.do(http.MethodGet, target, html, nil) })
		wantStatus(t, r, status, reason)
		if b.cookie(sessionCookie) != "" {
			t.Error("a refused callback set a session")
		}
	}

	t.Run("unknown state", func(t *testing.T) {
		_, b := fresh(t)
		cb := startFlow(t, b)
		refused(t, b, withQuery(cb, map[string]string{"state": "forged-state-value"}), http.StatusBadRequest, "oidc_unknown_state")
	})
	t.Run("state mismatch", func(t *testing.T) {
		// The flow cookie of the real login, presented under the name of another
		// state: it opens, but its state is not the callback's.
		f, b := fresh(t)
		cb := startFlow(t, b)
		real := b.cookie(oidc.FlowCookieName(f.Filter, cb.Query().Get("state")))
		if real == "" {
			t.Fatal("no flow cookie after the redirect to the provider")
		}
		b.setCookie(&http.Cookie{Name: oidc.FlowCookieName(f.Filter, "forged"), Value: real, Path: "/", Secure: true})
		refused(t, b, withQuery(cb, map[string]string{"state": "forged"}), http.StatusBadRequest, "oidc_state_mismatch")
	})
	t.Run("tampered flow cookie", func(t *testing.T) {
		f, b := fresh(t)
		cb := startFlow(t, b)
		name := oidc.FlowCookieName(f.Filter, cb.Query().Get("state"))
		b.setCookie(&http.Cookie{Name: name, Value: flip(b.cookie(name)), Path: "/", Secure: true})
		refused(t, b, cb.String(), http.StatusBadRequest, "oidc_bad_flow")
	})
	t.Run("flow expired", func(t *testing.T) {
		f, b := fresh(t)
		cb := startFlow(t, b)
		f.clk.advance(11 * 60e9) // the flow lives ten minutes
		refused(t, b, cb.String(), http.StatusBadRequest, "oidc_flow_expired")
	})
	t.Run("no code", func(t *testing.T) {
		_, b := fresh(t)
		cb := startFlow(t, b)
		refused(t, b, withQuery(cb, map[string]string{"code": ""}), http.StatusBadRequest, "oidc_bad_callback")
	})
	t.Run("post", func(t *testing.T) {
		_, b := fresh(t)
		cb := startFlow(t, b)
		var r response
		b.noFollow(func() { r = b.do(http.MethodPost, cb.String(), html, nil) })
		wantStatus(t, r, http.StatusBadRequest, "oidc_method_not_allowed")
	})
	t.Run("provider error", func(t *testing.T) {
		f, b := fresh(t)
		cb := startFlow(t, b)
		state := cb.Query().Get("state")
		target := withQuery(cb, map[string]string{"code": "", "error": "access_denied", "error_description": "user said <b>no</b>"})
		refused(t, b, target, http.StatusUnauthorized, "oidc_idp_access_denied")
		if b.cookie(oidc.FlowCookieName(f.Filter, state)) != "" {
			t.Error("the flow cookie survived a failed login")
		}
		ev := f.ev.all()
		if !strings.Contains(ev, "oidc_idp_access_denied") || !strings.Contains(ev, "error=access_denied") || strings.Contains(ev, "<b>") {
			t.Errorf("security events %q: want the error code, not the provider's text", ev)
		}
		// A code the client invented is not a metric label of its own.
		refused(t, b, withQuery(cb, map[string]string{"code": "", "error": "made_up\x01"}), http.StatusUnauthorized, "oidc_idp_error")
	})
	t.Run("replayed callback", func(t *testing.T) {
		f, b := fresh(t)
		cb := startFlow(t, b)
		name := oidc.FlowCookieName(f.Filter, cb.Query().Get("state"))
		flowValue := b.cookie(name)
		r := b.do(http.MethodGet, cb.String(), html, nil)
		wantStatus(t, r, http.StatusOK, "")
		grants := p.codeGrants.Load()
		// Forget the session, so that one set by a replay would show. The flow
		// cookie is gone already: the first callback deleted it.
		b.jar.SetCookies(mustURL(t, b.gw.URL), []*http.Cookie{{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1}})
		refused(t, b, cb.String(), http.StatusBadRequest, "oidc_unknown_state")
		// Even with the flow cookie put back, the provider refuses a used code.
		b.setCookie(&http.Cookie{Name: name, Value: flowValue, Path: "/", Secure: true})
		refused(t, b, cb.String(), http.StatusUnauthorized, "oidc_code_refused")
		if n := p.codeGrants.Load() - grants; n != 1 {
			t.Errorf("%d more code exchanges, want 1 (the one with the restored flow cookie)", n)
		}
	})
	t.Run("nonce mismatch", func(t *testing.T) {
		// The authorization request is changed on its way to the provider, which
		// then puts another nonce into the ID token.
		_, b := fresh(t)
		b.stop = func(req *http.Request) bool { return strings.HasPrefix(req.URL.String(), p.AuthorizationEndpoint()) }
		r := b.page("/start")
		b.stop = nil
		auth, _ := url.Parse(r.Header.Get("Location"))
		r = b.do(http.MethodGet, withQuery(auth, map[string]string{"nonce": "attacker-chosen"}), html, nil)
		wantStatus(t, r, http.StatusUnauthorized, "oidc_nonce_mismatch")
	})
	t.Run("pkce challenge swapped", func(t *testing.T) {
		// An attacker who swaps the challenge gets a code that the filter's
		// verifier cannot redeem.
		_, b := fresh(t)
		b.stop = func(req *http.Request) bool { return strings.HasPrefix(req.URL.String(), p.AuthorizationEndpoint()) }
		r := b.page("/start")
		b.stop = nil
		auth, _ := url.Parse(r.Header.Get("Location"))
		r = b.do(http.MethodGet, withQuery(auth, map[string]string{"code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}), html, nil)
		wantStatus(t, r, http.StatusUnauthorized, "oidc_code_refused")
	})
}

// TestOpenRedirect: the URL to return to after login is a path on this host, or
// an https URL of an allowed host; anything else is refused.
func TestOpenRedirect(t *testing.T) {
	p := newIdP(t, idpOpts{})
	s := newSetup(t, p)
	s.extra = "allowedRedirectHosts: [\"*.example.com\", partner.example.org]\n"
	f := build(t, s.config())
	gw := newGateway(t, route{"/", f})
	b := newBrowser(t, gw)

	for _, rd := range []string{
		"https://evil.example/",
		"//evil.example/",
		"/\\evil.example/",
		"/\t/evil.example/",
		"http://app.example.com/",          // allowed host, but not https
		"https://user@app.example.com/",    // credentials
		"https://example.com/",             // *.example.com is subdomains only
		"https://app.example.com.evil.io/", // suffix trick
		"javascript:alert(1)",
		"https:evil.example",
	} {
		var r response
		b.noFollow(func() { r = b.page(oidc.DefaultLoginPath + "?rd=" + url.QueryEscape(rd)) })
		if r.StatusCode != http.StatusBadRequest || r.Header.Get("X-Reason") != "oidc_bad_redirect" {
			t.Errorf("rd=%q: %d %s, want 400 oidc_bad_redirect (Location %q)", rd, r.StatusCode, r.Header.Get("X-Reason"), r.Header.Get("Location"))
		}
	}
	if n := p.authorizes.Load(); n != 0 {
		t.Errorf("%d logins started for refused return URLs", n)
	}

	// A path on this host.
	r := b.page(oidc.DefaultLoginPath + "?rd=" + url.QueryEscape("/dashboard?tab=2"))
	wantStatus(t, r, http.StatusOK, "")
	if got := r.Request.URL.RequestURI(); got != "/dashboard?tab=2" {
		t.Errorf("returned to %s, want /dashboard?tab=2", got)
	}
	// An allowed host: the chain ends with a redirect there (logged in already, so
	// without another trip to the provider).
	for _, rd := range []string{"https://app.example.com/home", "https://partner.example.org/x"} {
		b.stop = func(req *http.Request) bool { return !strings.HasPrefix(req.URL.Host, "127.0.0.1") }
		r = b.page(oidc.DefaultLoginPath + "?rd=" + url.QueryEscape(rd))
		b.stop = nil
		if r.StatusCode != http.StatusFound || r.Header.Get("Location") != rd {
			t.Errorf("rd=%q: %d to %q", rd, r.StatusCode, r.Header.Get("Location"))
		}
	}

	// A page whose path a browser would read as another host returns to "/".
	b2 := newBrowser(t, gw)
	r = b2.page("//evil.example/x")
	wantStatus(t, r, http.StatusOK, "")
	if r.Request.URL.Host != mustURL(t, gw.URL).Host || r.Request.URL.Path != "/" {
		t.Errorf("the login returned to %s, want %s/", r.Request.URL, gw.URL)
	}
}

// TestLargeSession: a session too large for one cookie is split into numbered
// cookies, which are put together again, never reach the upstream, and all go at
// logout.
func TestLargeSession(t *testing.T) {
	p := newIdP(t, idpOpts{})
	big := strings.Repeat("1 Long Street ", 700) // ~9.8 KB in the ID token, twice in the session
	p.QueueUser(&mockoidc.MockUser{Subject: "bob", Address: big})
	f := build(t, newSetup(t, p).config())
	gw := newGateway(t, route{"/", f})
	b := newBrowser(t, gw)

	login(t, b, "/big")
	back := b.hopTo(gw.URL + "/big")
	var chunks []string
	for _, c := range back.Response.Header["Set-Cookie"] {
		name, _, _ := strings.Cut(c, "=")
		if strings.HasPrefix(name, sessionCookie+"-") && !strings.Contains(name, "-flow-") {
			chunks = append(chunks, name)
			if len(c) > 4096 {
				t.Errorf("%s is %d bytes, over what browsers keep", name, len(c))
			}
		}
		if name == sessionCookie {
			t.Errorf("a whole session cookie besides the chunks: %.60s...", c)
		}
	}
	if len(chunks) < 3 {
		t.Fatalf("chunks %v: want the session split into three or more cookies", chunks)
	}
	for i, name := range chunks {
		if want := sessionCookie + "-" + string(rune('0'+i)); name != want {
			t.Errorf("chunk %d is %s, want %s", i, name, want)
		}
	}
	up := gw.last(t)
	if up.id == nil || up.id.Subject != "bob" || up.id.Claims["address"] != big {
		t.Fatal("the reassembled session lost the identity or its claims")
	}
	if c := up.header.Get("Cookie"); c != "" {
		t.Errorf("session chunks reached the upstream: %.80q", c)
	}

	r := b.api("/again")
	wantStatus(t, r, http.StatusOK, "")
	if gw.last(t).id == nil {
		t.Error("the second request was not authenticated from the chunks")
	}

	b.noFollow(func() { r = b.page(oidc.DefaultLogoutPath) })
	wantStatus(t, r, http.StatusFound, "")
	for _, name := range b.cookieNames() {
		if strings.HasPrefix(name, sessionCookie) {
			t.Errorf("%s survived the logout", name)
		}
	}
}

// TestSessionTooLarge: claims too large for the cookies allowed are a clear
// failure of the login, not a broken session.
func TestSessionTooLarge(t *testing.T) {
	p := newIdP(t, idpOpts{})
	p.QueueUser(&mockoidc.MockUser{Subject: "carol", Address: strings.Repeat("x", 40000)})
	f := build(t, newSetup(t, p).config())
	b := newBrowser(t, newGateway(t, route{"/", f}))
	r := b.page("/")
	wantStatus(t, r, http.StatusBadGateway, "oidc_session_too_large")
	if len(b.cookieNames()) != 0 {
		t.Errorf("cookies %v left after a failed login", b.cookieNames())
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// flip changes one character in the middle of a cookie value, keeping it base64url.
func flip(v string) string {
	if v == "" {
		return v
	}
	i := len(v) / 2
	c := byte('A')
	if v[i] == 'A' {
		c = 'B'
	}
	return v[:i] + string(c) + v[i+1:]
}
