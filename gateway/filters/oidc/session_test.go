package oidc_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/portcullis/portcullis/gateway/filters/oidc"
)

// TestRefresh: tokens that expire within refreshBefore are refreshed at the token
// endpoint with the refresh token, and the new session cookie reaches the browser
// beside the upstream's own cookies.
func TestRefresh(t *testing.T) {
	p := newIdP(t, idpOpts{}) // tokens for 10 minutes
	s := newSetup(t, p)
	s.extra = "refreshBefore: 1m\n"
	f := build(t, s.config())
	gw := newGateway(t, route{"/", f})
	b := newBrowser(t, gw)

	login(t, b, "/")
	if n := p.refreshGrants.Load(); n != 0 {
		t.Fatalf("%d refreshes during login", n)
	}
	before := b.cookie(sessionCookie)
	wantStatus(t, b.api("/api/data"), http.StatusOK, "")
	if n := p.refreshGrants.Load(); n != 0 {
		t.Fatalf("%d refreshes of fresh tokens", n)
	}

	f.clk.advance(9*time.Minute + 30*time.Second) // within refreshBefore of the expiry
	r := b.api("/api/data")
	wantStatus(t, r, http.StatusOK, "")
	if n := p.refreshGrants.Load(); n != 1 {
		t.Fatalf("%d refresh grants at the token endpoint, want 1", n)
	}
	var app, session bool
	for _, c := range r.Header["Set-Cookie"] {
		app = app || strings.HasPrefix(c, "app=1")
		session = session || strings.HasPrefix(c, sessionCookie+"=")
	}
	if !app || !session {
		t.Errorf("Set-Cookie %q: want the upstream's cookie and the re-issued session", r.Header["Set-Cookie"])
	}
	if after := b.cookie(sessionCookie); after == "" || after == before {
		t.Error("the session cookie did not change after the refresh")
	}
	if up := gw.last(t); up.id == nil || up.id.Subject != mockoidc.DefaultUser().Subject {
		t.Errorf("upstream identity after refresh %+v", up.id)
	}

	// The provider fails (503): the tokens are still valid, so the session goes on
	// unchanged, and the next request tries again.
	p.down.Store(true)
	current := b.cookie(sessionCookie)
	r = b.api("/api/data")
	wantStatus(t, r, http.StatusOK, "")
	if b.cookie(sessionCookie) != current {
		t.Error("the session changed although the refresh failed")
	}
	if n := p.refreshGrants.Load(); n != 2 {
		t.Errorf("%d refresh grants, want 2", n)
	}
	p.down.Store(false)
}

// TestRefreshRefusedLogsOut: when the provider refuses the refresh token, the
// session ends: 401 for a script, the cookie deleted, the next page a login.
func TestRefreshRefusedLogsOut(t *testing.T) {
	p := newIdP(t, idpOpts{})
	s := newSetup(t, p)
	s.extra = "refreshBefore: 1m\n"
	f := build(t, s.config())
	b := newBrowser(t, newGateway(t, route{"/", f}))
	login(t, b, "/")
	f.clk.advance(9*time.Minute + 30*time.Second)

	p.QueueError(&mockoidc.ServerError{Code: http.StatusBadRequest, Error: "invalid_grant", Description: "token revoked"})
	r := b.api("/api/data")
	wantStatus(t, r, http.StatusUnauthorized, "oidc_refresh_failed")
	if b.cookie(sessionCookie) != "" {
		t.Error("the session cookie was not deleted")
	}
	if ev := f.ev.all(); !strings.Contains(ev, "oidc_refresh_failed") || !strings.Contains(ev, "error=invalid_grant") {
		t.Errorf("security events %q", ev)
	}
	b.noFollow(func() { r = b.page("/") })
	if r.StatusCode != http.StatusFound || !strings.HasPrefix(r.Header.Get("Location"), p.AuthorizationEndpoint()) {
		t.Errorf("after a refused refresh a page got %d to %q, want a login", r.StatusCode, r.Header.Get("Location"))
	}
}

// TestSessionMaxAge: a session ends maxAge after login, whatever its tokens.
func TestSessionMaxAge(t *testing.T) {
	p := newIdP(t, idpOpts{})
	s := newSetup(t, p)
	s.cookieExtra = "  maxAge: 1h\n"
	f := build(t, s.config())
	b := newBrowser(t, newGateway(t, route{"/", f}))
	login(t, b, "/")
	wantStatus(t, b.api("/api"), http.StatusOK, "")

	f.clk.advance(time.Hour + time.Second)
	r := b.api("/api")
	wantStatus(t, r, http.StatusUnauthorized, "oidc_session_expired")
	if p.refreshGrants.Load() != 0 {
		t.Error("an ended session was refreshed")
	}
}

// TestLogout: logout deletes the session and goes to postLogoutRedirect; the next
// page load is a login again.
func TestLogout(t *testing.T) {
	p := newIdP(t, idpOpts{})
	s := newSetup(t, p)
	s.extra = "postLogoutRedirect: /bye\n"
	f := build(t, s.config())
	gw := newGateway(t, route{"/", f})
	b := newBrowser(t, gw)
	login(t, b, "/")

	var r response
	b.noFollow(func() { r = b.page(oidc.DefaultLogoutPath) })
	wantStatus(t, r, http.StatusFound, "")
	if loc := r.Header.Get("Location"); loc != "/bye" {
		t.Errorf("logout went to %q, want /bye", loc)
	}
	if b.cookie(sessionCookie) != "" {
		t.Error("the session cookie survived the logout")
	}
	b.noFollow(func() { r = b.page("/") })
	if r.StatusCode != http.StatusFound || !strings.HasPrefix(r.Header.Get("Location"), p.AuthorizationEndpoint()) {
		t.Errorf("after logout a page got %d to %q, want a login", r.StatusCode, r.Header.Get("Location"))
	}

	// A form posting to the logout path is answered with 303 (then GET).
	login(t, b, "/")
	b.noFollow(func() { r = b.do(http.MethodPost, oidc.DefaultLogoutPath, html, nil) })
	wantStatus(t, r, http.StatusSeeOther, "")
	if b.cookie(sessionCookie) != "" {
		t.Error("the session cookie survived the logout by POST")
	}
}

// TestLogoutAtProvider: with an end_session_endpoint in discovery, logout goes
// there with id_token_hint, client_id and an absolute post_logout_redirect_uri.
func TestLogoutAtProvider(t *testing.T) {
	p := newIdP(t, idpOpts{endSession: true})
	p.QueueUser(&mockoidc.MockUser{Subject: "dave"})
	s := newSetup(t, p)
	s.extra = "postLogoutRedirect: /bye\n"
	f := build(t, s.config())
	gw := newGateway(t, route{"/", f})
	b := newBrowser(t, gw)
	login(t, b, "/")

	var r response
	b.noFollow(func() { r = b.page(oidc.DefaultLogoutPath) })
	wantStatus(t, r, http.StatusFound, "")
	loc, err := url.Parse(r.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), p.Addr()+"/oidc/logout?") {
		t.Fatalf("logout went to %q, want the provider's end_session_endpoint", r.Header.Get("Location"))
	}
	q := loc.Query()
	if q.Get("post_logout_redirect_uri") != gw.URL+"/bye" || q.Get("client_id") != p.ClientID {
		t.Errorf("end-session query %v", q)
	}
	parts := strings.Split(q.Get("id_token_hint"), ".")
	if len(parts) != 3 {
		t.Fatalf("id_token_hint %q is not a JWT", q.Get("id_token_hint"))
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct{ Sub string }
	if json.Unmarshal(payload, &claims) != nil || claims.Sub != "dave" {
		t.Errorf("id_token_hint is not the session's ID token: %s", payload)
	}
	if b.cookie(sessionCookie) != "" {
		t.Error("the session cookie survived the logout")
	}
}

// TestTamperedSession: a session cookie that does not decrypt counts as no
// session (a login for a page, 401 for a script), is deleted, and is reported
// without its value; never a 500.
func TestTamperedSession(t *testing.T) {
	p := newIdP(t, idpOpts{})
	f := build(t, newSetup(t, p).config())
	b := newBrowser(t, newGateway(t, route{"/", f}))
	login(t, b, "/")
	good := b.cookie(sessionCookie)
	bad := flip(good)
	b.setCookie(&http.Cookie{Name: sessionCookie, Value: bad, Path: "/", Secure: true, HttpOnly: true})

	r := b.api("/api")
	wantStatus(t, r, http.StatusUnauthorized, "oidc_bad_session")
	if b.cookie(sessionCookie) != "" {
		t.Error("the tampered cookie was not deleted")
	}
	b.setCookie(&http.Cookie{Name: sessionCookie, Value: bad, Path: "/", Secure: true, HttpOnly: true})
	b.noFollow(func() { r = b.page("/") })
	if r.StatusCode != http.StatusFound || !strings.HasPrefix(r.Header.Get("Location"), p.AuthorizationEndpoint()) {
		t.Errorf("a page with a tampered cookie got %d to %q, want a login", r.StatusCode, r.Header.Get("Location"))
	}
	ev := f.ev.all()
	if strings.Count(ev, "oidc_bad_session") != 2 {
		t.Errorf("security events %q: want two oidc_bad_session", ev)
	}
	if strings.Contains(ev+f.log.String(), bad[:40]) || strings.Contains(ev+f.log.String(), good[:40]) {
		t.Error("a cookie value was logged")
	}

	// Garbage of every shape: not base64, empty, huge.
	for _, v := range []string{"%%%", "e30", strings.Repeat("A", 5000)} {
		b.setCookie(&http.Cookie{Name: sessionCookie, Value: v, Path: "/", Secure: true})
		wantStatus(t, b.api("/api"), http.StatusUnauthorized, "oidc_bad_session")
	}
}

// TestBearerOnly: on an API route in bearerOnly mode a request without a session
// gets 401 and never a redirect, even from a browser; the session made by the
// browser route's login is accepted there.
func TestBearerOnly(t *testing.T) {
	p := newIdP(t, idpOpts{})
	s := newSetup(t, p)
	browserMode := build(t, s.config())
	s.extra = "mode: bearerOnly\n"
	api := build(t, s.config())
	gw := newGateway(t, route{"/api/", api}, route{"/", browserMode})
	b := newBrowser(t, gw)

	r := b.page("/api/orders")
	wantStatus(t, r, http.StatusUnauthorized, "oidc_no_session")
	if len(b.hops) != 0 || r.Header.Get("Location") != "" {
		t.Errorf("bearerOnly redirected: %v", b.hops)
	}
	if !strings.HasPrefix(r.Header.Get("Www-Authenticate"), "Cookie ") {
		t.Errorf("challenge %q", r.Header.Get("Www-Authenticate"))
	}
	if p.authorizes.Load() != 0 || p.discoveries.Load() != 0 {
		t.Error("bearerOnly contacted the provider for a request without a session")
	}

	login(t, b, "/")
	r = b.api("/api/orders")
	wantStatus(t, r, http.StatusOK, "")
	if up := gw.last(t); up.id == nil || up.id.Source != "oidc" || strings.Contains(up.header.Get("Cookie"), sessionCookie) {
		t.Errorf("bearerOnly upstream saw identity %+v, cookie %.80q", up.id, up.header.Get("Cookie"))
	}
}

// TestProviderDownAtStart: the filter builds while the provider is down; logins
// get 503 while discovery keeps retrying, at most about once a second however
// many requests ask, and work once the provider is up.
func TestProviderDownAtStart(t *testing.T) {
	p := newIdP(t, idpOpts{})
	p.down.Store(true)
	f := build(t, newSetup(t, p).config())
	if n := p.discoveries.Load(); n != 0 {
		t.Fatalf("building the filter made %d discovery requests, want none", n)
	}
	gw := newGateway(t, route{"/", f})
	b := newBrowser(t, gw)

	start := time.Now()
	for range 10 {
		r := b.page("/")
		wantStatus(t, r, http.StatusServiceUnavailable, "oidc_idp_unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
	if n, d := p.discoveries.Load(), time.Since(start); n < 1 || float64(n) > d.Seconds()+2 {
		t.Errorf("%d discovery attempts in %v: want at least one and about one a second at most", n, d.Round(time.Millisecond))
	}

	p.down.Store(false)
	up := time.Now()
	waitFor(t, "a login once the provider is up", func() bool { return b.page("/").StatusCode == http.StatusOK })
	if d := time.Since(up); d > 3*time.Second {
		t.Errorf("recovery took %v after the provider came up", d)
	}
	if n, d := p.discoveries.Load(), time.Since(start); float64(n) > d.Seconds()+3 {
		t.Errorf("%d discovery attempts in %v: retries are not bounded", n, d.Round(time.Millisecond))
	}
	if !strings.Contains(f.log.String(), "provider discovery failed") {
		t.Error("the failed discovery was not logged")
	}
}

// TestCloseStopsDiscovery: closing the filter ends the retry loop at once.
func TestCloseStopsDiscovery(t *testing.T) {
	p := newIdP(t, idpOpts{})
	p.down.Store(true)
	f := build(t, newSetup(t, p).config())
	b := newBrowser(t, newGateway(t, route{"/", f}))
	wantStatus(t, b.page("/"), http.StatusServiceUnavailable, "oidc_idp_unavailable")
	start := time.Now()
	closeFilter(t, f.Filter)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
}

// TestShortTokensWarn: tokens that live no longer than refreshBefore would be
// refreshed on every request; the log says so once.
func TestShortTokensWarn(t *testing.T) {
	p := newIdP(t, idpOpts{accessTTL: 30 * time.Second})
	s := newSetup(t, p)
	s.extra = "refreshBefore: 1m\n"
	f := build(t, s.config())
	b := newBrowser(t, newGateway(t, route{"/", f}))
	login(t, b, "/")
	wantStatus(t, b.api("/api"), http.StatusOK, "")
	if n := strings.Count(f.log.String(), "every request refreshes"); n != 1 {
		t.Errorf("%d warnings about tokens shorter than refreshBefore, want 1:\n%s", n, f.log.String())
	}
	if p.refreshGrants.Load() < 2 {
		t.Errorf("%d refreshes: tokens within refreshBefore of expiry were not refreshed", p.refreshGrants.Load())
	}
}
