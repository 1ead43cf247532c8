package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"html"
	"net/http"
	"net/url"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/oauth2"
)

// maxReturnTo bounds the URL kept in a flow cookie to come back to after login.
const maxReturnTo = 2048

// startLogin sends the browser to the provider's authorization endpoint with a
// fresh state (CSRF protection of the callback, RFC 6749 §10.12), nonce (binds the
// ID token to this login, OpenID Connect Core §3.1.2.1) and PKCE S256 challenge
// (RFC 7636: a stolen code is useless without the verifier). The three and the URL
// to return to go into a flow cookie named after the state, sealed, and alive for
// ten minutes; nothing is kept on the server.
func (f *oidcFilter) startLogin(w http.ResponseWriter, r *http.Request, returnTo string) error {
	p := f.disc.get(r.Context())
	if p == nil {
		return f.refuse(w, r, reasonIdPUnavailable, "issuer="+f.issuer)
	}
	redirect, ok := f.callbackURL(r)
	if !ok {
		return f.refuse(w, r, reasonBadHost)
	}
	fl := flow{
		State: rand.Text(), Nonce: rand.Text(), Verifier: oauth2.GenerateVerifier(),
		ReturnTo: returnTo, Created: f.now().Unix(),
	}
	value, err := f.flows.seal(&fl)
	if err != nil {
		return err
	}
	h := w.Header()
	if old := f.flowCookies(r); len(old) >= maxFlows {
		// Logins started and never finished (tabs left at the provider's page):
		// drop them rather than let the cookies grow the request header.
		for _, name := range old {
			addCookies(h, []string{f.cookie(name, "", -1, http.SameSiteLaxMode)})
		}
	}
	// Lax whatever the session's SameSite: the callback is a cross-site navigation
	// from the provider, and a Strict cookie would not come with it.
	addCookies(h, []string{f.cookie(f.flowName(fl.State), value, int(flowLifetime/time.Second), http.SameSiteLaxMode)})
	h.Set("Location", f.oauth(p, redirect).AuthCodeURL(fl.State,
		gooidc.Nonce(fl.Nonce), oauth2.S256ChallengeOption(fl.Verifier)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
	return nil
}

// callbackURL is the redirect_uri: the callback path on the host the browser
// asked for, always https (the session cookie is Secure, so the site must be
// served over https as the browser sees it). The provider accepts only registered
// redirect URIs, so a forged Host gets no code sent anywhere else.
func (f *oidcFilter) callbackURL(r *http.Request) (string, bool) {
	if r.Host == "" || !httpguts.ValidHostHeader(r.Host) || strings.ContainsAny(r.Host, "/?#@\\") {
		return "", false
	}
	return "https://" + r.Host + f.redirectPath, true
}

// callback completes a login: the provider sent the browser back with a code (or
// an error) and the state.
func (f *oidcFilter) callback(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Referrer-Policy", "no-referrer") // the URL carries the code
	if r.Method != http.MethodGet {
		return f.refuse(w, r, reasonMethod, "method="+oauthCode(r.Method))
	}
	q := r.URL.Query()
	state := q.Get("state")
	var fl *flow
	why := reasonUnknownState
	if state != "" {
		fl, why = f.readFlow(r, state)
		if why != reasonUnknownState {
			// One use only: a replayed callback finds no flow cookie.
			addCookies(w.Header(), []string{f.cookie(f.flowName(state), "", -1, http.SameSiteLaxMode)})
		}
	}
	if code := q.Get("error"); code != "" {
		// RFC 6749 §4.1.2.1: the user denied, or the provider refused. The
		// description is the provider's text: not logged, not reflected.
		name, st := idpReason(code)
		return f.refuseAs(w, r, name, st, []string{"error=" + oauthCode(code)})
	}
	if len(q["code"]) != 1 || len(q["state"]) != 1 || q.Get("code") == "" || state == "" {
		return f.refuse(w, r, reasonBadCallback)
	}
	if why != reasonNone {
		return f.refuse(w, r, why)
	}
	p := f.disc.get(r.Context())
	if p == nil {
		return f.refuse(w, r, reasonIdPUnavailable, "issuer="+f.issuer)
	}
	redirect, ok := f.callbackURL(r)
	if !ok {
		return f.refuse(w, r, reasonBadHost)
	}
	ctx, cancel := context.WithTimeout(r.Context(), idpTimeout)
	defer cancel()
	ctx = gooidc.ClientContext(ctx, f.client)
	tok, err := f.oauth(p, redirect).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(fl.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// invalid_grant: a code used twice, expired, or not matching the verifier.
			return f.refuse(w, r, reasonCodeRefused, "error="+oauthCode(re.ErrorCode))
		}
		f.log.Warn("oidc: code exchange failed", "error", err)
		return f.refuse(w, r, reasonIdPUnavailable, "error=unreachable")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return f.refuse(w, r, reasonNoIDToken)
	}
	idt, err := p.verifier.Verify(ctx, raw) // signature, iss, aud = clientID, exp
	if err != nil {
		var expired *gooidc.TokenExpiredError
		if errors.As(err, &expired) {
			return f.refuse(w, r, reasonBadIDToken, "error=expired")
		}
		return f.refuse(w, r, reasonBadIDToken, "error=invalid")
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(fl.Nonce)) != 1 {
		return f.refuse(w, r, reasonNonceMismatch)
	}
	if idt.AccessTokenHash != "" && idt.VerifyAccessToken(tok.AccessToken) != nil {
		return f.refuse(w, r, reasonBadIDToken, "error=at_hash")
	}
	claims, err := idTokenClaims(raw)
	if err != nil || idt.Subject == "" {
		return f.refuse(w, r, reasonBadIDToken, "error=no_subject")
	}
	s := &session{
		Subject: idt.Subject, IDToken: raw, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken,
		Expiry: f.tokenExpiry(tok, idt.Expiry).Unix(), AuthTime: f.now().Unix(), claims: claims,
	}
	lines, err := f.sessionCookies(r, s)
	if err != nil {
		f.log.Error("oidc: the session does not fit in the cookies; ask for fewer scopes or claims", "error", err)
		return f.refuse(w, r, reasonSessionTooLarge)
	}
	addCookies(w.Header(), lines)
	f.redirectAfterLogin(w, fl.ReturnTo)
	return nil
}

// readFlow opens the flow cookie of a state and checks that it belongs to it and
// is not stale.
func (f *oidcFilter) readFlow(r *http.Request, state string) (*flow, reason) {
	name := f.flowName(state)
	why := reasonUnknownState
	for _, c := range r.Cookies() {
		if c.Name != name {
			continue
		}
		var fl flow
		switch {
		case f.flows.open(c.Value, &fl) != nil:
			why = reasonBadFlow
		case subtle.ConstantTimeCompare([]byte(fl.State), []byte(state)) != 1:
			why = reasonStateMismatch
		case f.now().After(time.Unix(fl.Created, 0).Add(flowLifetime)):
			why = reasonFlowExpired
		default:
			return &fl, reasonNone
		}
	}
	return nil, why
}

// redirectAfterLogin sends the browser back where it was going. With SameSite
// Strict, the redirect of a chain that started at the provider counts as
// cross-site, and the new cookie would not be sent: the browser would come back
// without it and start another login, forever. So then a page navigates instead,
// which is a same-site navigation.
func (f *oidcFilter) redirectAfterLogin(w http.ResponseWriter, to string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if f.sameSite != http.SameSiteStrictMode {
		h.Set("Location", to)
		w.WriteHeader(http.StatusFound)
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'")
	w.WriteHeader(http.StatusOK)
	u := html.EscapeString(to)
	_, _ = w.Write([]byte(`<!doctype html><meta http-equiv="refresh" content="0;url=` + u +
		`"><title>Signed in</title><a href="` + u + `">Continue</a>`))
}

// login is the explicit start of a login: GET loginPath?rd=<where to go after>.
// With a valid session already, it goes straight there.
func (f *oidcFilter) login(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return f.refuse(w, r, reasonMethod, "method="+oauthCode(r.Method))
	}
	to := "/"
	if rd := r.URL.Query().Get("rd"); rd != "" {
		var ok bool
		if to, ok = f.safeReturn(r, rd); !ok {
			return f.refuse(w, r, reasonBadRedirect)
		}
	}
	if s, why := f.readSession(r); why == reasonNone {
		now := f.now()
		if now.Before(time.Unix(s.AuthTime, 0).Add(f.maxAge)) && now.Before(time.Unix(s.Expiry, 0)) {
			w.Header().Set("Location", to)
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusFound)
			return nil
		}
	}
	return f.startLogin(w, r, to)
}

// safeReturn checks a URL to return to after login (the rd parameter). Only a path
// on this host is allowed, or an https URL of this host or of one listed in
// allowedRedirectHosts; anything else would make the login an open redirect
// (RFC 6749 §10.15), one that phishing links could borrow the site's name for.
func (f *oidcFilter) safeReturn(r *http.Request, raw string) (string, bool) {
	if len(raw) > maxReturnTo || strings.ContainsFunc(raw, func(c rune) bool { return c <= ' ' || c == 0x7f || c == '\\' }) {
		// Browsers drop tabs and newlines and read "\" as "/": "/\t/evil" and
		// "/\evil" both lead to evil.
		return "", false
	}
	if strings.HasPrefix(raw, "/") {
		return raw, safeRelative(raw)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Host == "" || u.Opaque != "" {
		return "", false
	}
	if strings.EqualFold(u.Host, r.Host) || hostAllowed(strings.ToLower(u.Hostname()), f.redirectHosts) {
		return u.String(), true
	}
	return "", false
}

// safeRelative reports whether p is a path on this host: "/..." but not "//..."
// (another host, scheme-relative), with nothing a browser would rewrite.
func safeRelative(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") &&
		!strings.ContainsFunc(p, func(c rune) bool { return c <= ' ' || c == 0x7f || c == '\\' })
}

// requestReturnTo is where a login started by a page load returns: that page. A
// path a browser would take for another host ("//evil.example/") is replaced by "/".
func requestReturnTo(r *http.Request) string {
	u := r.URL.RequestURI()
	if len(u) > maxReturnTo || !safeRelative(u) {
		return "/"
	}
	return u
}

// hostAllowed matches a lower-case host name against exact names and "*.domain"
// patterns (any subdomain of domain, not domain itself).
func hostAllowed(host string, patterns []string) bool {
	for _, p := range patterns {
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			if len(host) > len(suffix) && strings.HasSuffix(host, suffix) {
				return true
			}
		} else if host == p {
			return true
		}
	}
	return false
}

// logout ends the session: its cookies and any login in progress are deleted, and
// the browser goes to the provider's end_session_endpoint (OpenID Connect
// RP-Initiated Logout, with id_token_hint and post_logout_redirect_uri) when it
// has one, else straight to postLogoutRedirect.
func (f *oidcFilter) logout(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return f.refuse(w, r, reasonMethod, "method="+oauthCode(r.Method))
	}
	h := w.Header()
	addCookies(h, f.expireSession(r, nil))
	for _, name := range f.flowCookies(r) {
		addCookies(h, []string{f.cookie(name, "", -1, http.SameSiteLaxMode)})
	}
	to := f.postLogout
	if p := f.disc.get(r.Context()); p != nil && p.endSession != "" {
		u, err := url.Parse(p.endSession)
		if err == nil {
			q := u.Query()
			if s, why := f.readSession(r); why == reasonNone {
				q.Set("id_token_hint", s.IDToken)
			}
			q.Set("client_id", f.clientID)
			if abs, ok := f.absolute(r, f.postLogout); ok {
				q.Set("post_logout_redirect_uri", abs)
			}
			u.RawQuery = q.Encode()
			to = u.String()
		}
	}
	h.Set("Location", to)
	h.Set("Cache-Control", "no-store")
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther // the browser follows with a GET
	}
	w.WriteHeader(status)
	return nil
}

// absolute makes a configured path absolute on the request's host (the provider
// needs an absolute post_logout_redirect_uri).
func (f *oidcFilter) absolute(r *http.Request, to string) (string, bool) {
	if !strings.HasPrefix(to, "/") {
		return to, true
	}
	base, ok := f.callbackURL(r)
	if !ok {
		return "", false
	}
	return strings.TrimSuffix(base, f.redirectPath) + to, true
}
