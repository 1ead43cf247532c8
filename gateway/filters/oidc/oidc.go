// Package oidc is the "oidc" filter: browser login with OpenID Connect (the
// authorization-code flow with PKCE, RFC 7636) and a session kept in an encrypted,
// authenticated cookie. An unauthenticated page load is sent to the provider's
// login; the callback checks state, exchanges the code with the PKCE verifier,
// verifies the ID token (issuer, audience, signature, expiry, nonce) with go-oidc,
// and sets the session cookie. Later requests are admitted with the session's
// identity (filter.Identity, Source "oidc"), tokens are refreshed shortly before
// they expire, and the filter's own cookies and any Authorization header never
// reach the upstream.
//
// Nothing is kept on the server: a login in progress lives in a short-lived flow
// cookie bound to its state, and the session in the session cookie (split into
// numbered cookies when large), so a flood of login starts costs no memory and
// replicas need share nothing but the cookie secret.
//
// It is not for: bearer tokens sent by API clients (the jwt filter's), authorization
// beyond "logged in" (edge authorization's), or sessions revocable on the server
// side (a session store, which the control plane will provide).
package oidc

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// oidcFilter is immutable after Factory, except for the discovered provider (an
// atomic pointer) and the refresh group, both safe for concurrent use.
type oidcFilter struct {
	route  string
	log    *slog.Logger
	events filter.Events
	now    func() time.Time

	issuer       string
	clientID     string
	clientSecret string
	scopes       []string
	bearerOnly   bool

	redirectPath  string
	loginPath     string
	logoutPath    string
	postLogout    string
	redirectHosts []string

	refreshBefore time.Duration
	maxAge        time.Duration
	sameSite      http.SameSite
	cookieName    string
	sessions      *sealer
	flows         *sealer

	headers   []claimHeader
	challenge string // WWW-Authenticate of a 401

	client  *http.Client
	disc    *discovery
	refresh singleflight.Group
	// warnedShortTokens is set once the log said that tokens live shorter than
	// refreshBefore (every request would refresh).
	warnedShortTokens atomic.Bool
}

var _ filter.Filter = (*oidcFilter)(nil)

type claimHeader struct {
	claim  string
	header string // canonical
}

// Handle answers the filter's own paths (browser mode) and admits every other
// request only with a valid session.
func (f *oidcFilter) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	if !f.bearerOnly {
		switch r.URL.Path {
		case f.redirectPath:
			return f.callback(w, r)
		case f.loginPath:
			return f.login(w, r)
		case f.logoutPath:
			return f.logout(w, r)
		}
	}
	s, why := f.readSession(r)
	if why != reasonNone {
		if why == reasonBadSession {
			addCookies(w.Header(), f.expireSession(r, nil)) // not ours, or tampered with
		}
		return f.unauthenticated(w, r, why, nil)
	}
	s, reissue, why, detail := f.fresh(r, s)
	if why != reasonNone {
		addCookies(w.Header(), f.expireSession(r, nil)) // logged out: forget the session
		return f.unauthenticated(w, r, why, detail)
	}
	r2 := filter.WithIdentity(r, &filter.Identity{Source: Type, Issuer: f.issuer, Subject: s.Subject, Claims: s.claims})
	r2.Header = r.Header.Clone()
	f.clean(r2.Header)
	for _, m := range f.headers {
		if v, ok := filter.ClaimHeaderValue(s.claims[m.claim]); ok {
			r2.Header[m.header] = []string{v}
		}
	}
	if len(reissue) == 0 {
		return next.ServeHTTP(w, r2)
	}
	// Set now, for an error answered by the core with this header map; and again
	// just before the upstream's response goes out, which replaces Set-Cookie.
	addCookies(w.Header(), reissue)
	return next.ServeHTTP(&cookieWriter{rw: w, lines: reissue}, r2)
}

// clean removes from a request header (a copy the filter owns) what must never
// reach the upstream: the filter's cookies (a session cookie is a credential for
// this gateway, not for the application, and an upstream that logged or forwarded
// it would leak every user's login), any Authorization the browser sent (an
// upstream must take the identity from the filter, not from the client), and
// client-sent copies of the claim headers.
func (f *oidcFilter) clean(h http.Header) {
	f.stripCookies(h)
	delete(h, "Authorization")
	for k := range h {
		for _, m := range f.headers {
			if filter.SameHeaderName(k, m.header) {
				delete(h, k)
				break
			}
		}
	}
}

// fresh checks a session's lifetime and refreshes its tokens when they are about
// to expire. It returns the session to use, the Set-Cookie lines that re-issue it
// (after a refresh), or why the caller counts as logged out (with details for
// the log).
func (f *oidcFilter) fresh(r *http.Request, s *session) (*session, []string, reason, []string) {
	now := f.now()
	if !now.Before(time.Unix(s.AuthTime, 0).Add(f.maxAge)) {
		return nil, nil, reasonSessionExpired, []string{"ended=maxAge"}
	}
	expiry := time.Unix(s.Expiry, 0)
	if now.Before(expiry.Add(-f.refreshBefore)) {
		return s, nil, reasonNone, nil
	}
	if s.RefreshToken == "" {
		if now.Before(expiry) {
			return s, nil, reasonNone, nil
		}
		return nil, nil, reasonSessionExpired, []string{"ended=tokens_expired"}
	}
	ns, err := f.refreshed(r.Context(), s)
	if err != nil {
		if !permanent(err) && now.Before(expiry) {
			// The provider could not be reached, but the tokens are still good:
			// keep serving, and try again on the next request.
			f.log.Warn("oidc: token refresh failed; the session continues until its tokens expire", "error", err)
			return s, nil, reasonNone, nil
		}
		return nil, nil, reasonRefreshFailed, refreshDetail(err)
	}
	lines, err := f.sessionCookies(r, ns)
	if err != nil {
		f.log.Warn("oidc: the refreshed session cannot be stored; the client keeps the previous cookie", "error", err)
		return ns, nil, reasonNone, nil
	}
	return ns, lines, reasonNone, nil
}

var errBadRefresh = errors.New("the refreshed ID token is not acceptable")

// permanent reports whether a failed refresh ends the session: the provider
// refused the refresh token (an OAuth error answer, RFC 6749 §5.2: revoked,
// expired, rotated) or sent an ID token that does not verify. A provider that
// cannot be reached or answers 5xx has said nothing about the session.
func permanent(err error) bool {
	if errors.Is(err, errBadRefresh) {
		return true
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.Response == nil || re.Response.StatusCode < http.StatusInternalServerError
	}
	return false
}

// refreshed asks the provider for new tokens (oauth2 TokenSource, refresh_token
// grant). Concurrent requests of one session (a page loading its assets) share one
// call: providers that rotate refresh tokens accept each only once, and a second
// call would fail and log the user out. The call is detached from the request, so
// that one client giving up does not fail the others waiting on it.
func (f *oidcFilter) refreshed(ctx context.Context, s *session) (*session, error) {
	p := f.disc.get(ctx)
	if p == nil {
		return nil, errIdPUnavailable
	}
	key := sha256.Sum256([]byte(s.RefreshToken))
	v, err, _ := f.refresh.Do(string(key[:]), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), idpTimeout)
		defer cancel()
		ctx = gooidc.ClientContext(ctx, f.client)
		tok, err := f.oauth(p, "").TokenSource(ctx, &oauth2.Token{RefreshToken: s.RefreshToken}).Token()
		if err != nil {
			return nil, err
		}
		ns := *s
		ns.AccessToken = tok.AccessToken
		if tok.RefreshToken != "" {
			ns.RefreshToken = tok.RefreshToken
		}
		var idExpiry time.Time
		if raw, _ := tok.Extra("id_token").(string); raw != "" {
			idt, err := p.verifier.Verify(ctx, raw)
			// OpenID Connect Core §12.2: a refreshed ID token names the same
			// subject (and issuer, which Verify checked).
			if err != nil || idt.Subject != s.Subject {
				return nil, errors.Join(errBadRefresh, err)
			}
			if ns.claims, err = idTokenClaims(raw); err != nil {
				return nil, errBadRefresh
			}
			ns.IDToken, idExpiry = raw, idt.Expiry
		}
		ns.Expiry = f.tokenExpiry(tok, idExpiry).Unix()
		return &ns, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*session), nil
}

var errIdPUnavailable = errors.New("the provider is not discovered yet")

// defaultTokenLifetime is assumed when neither the token response nor the ID
// token says when the tokens expire.
const defaultTokenLifetime = 5 * time.Minute

// tokenExpiry is the earlier of the access token's and the ID token's expiry,
// ignoring either when absent or not in the future. Providers differ in which
// they make shorter, and some send expires_in in the wrong unit; refreshing at the
// earlier one is always safe.
func (f *oidcFilter) tokenExpiry(tok *oauth2.Token, idExpiry time.Time) time.Time {
	now := f.now()
	var exp time.Time
	for _, t := range []time.Time{tok.Expiry, idExpiry} {
		if t.After(now) && (exp.IsZero() || t.Before(exp)) {
			exp = t
		}
	}
	if exp.IsZero() {
		exp = now.Add(defaultTokenLifetime)
	}
	if exp.Sub(now) <= f.refreshBefore && f.warnedShortTokens.CompareAndSwap(false, true) {
		f.log.Warn("oidc: the provider's tokens live no longer than refreshBefore, so every request refreshes them; lower refreshBefore",
			"lifetime", exp.Sub(now).Round(time.Second), "refreshBefore", f.refreshBefore)
	}
	return exp
}

// oauth is the OAuth 2.0 client config for one call. redirect is the callback URL
// (the exchange must send the one the authorization request sent).
func (f *oidcFilter) oauth(p *provider, redirect string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: f.clientID, ClientSecret: f.clientSecret,
		Endpoint: p.endpoint, RedirectURL: redirect, Scopes: f.scopes,
	}
}

// unauthenticated answers a request without a usable session: a page load in
// browser mode goes to the login; anything else (an API call, a form post, any
// request in bearerOnly mode) gets 401, since a redirect would only confuse a
// script and a POST's body would be lost on the way.
func (f *oidcFilter) unauthenticated(w http.ResponseWriter, r *http.Request, why reason, detail []string) error {
	if !f.bearerOnly && isNavigation(r) {
		switch why {
		case reasonBadSession, reasonRefreshFailed:
			// Worth a line even though the user just logs in again.
			f.security(r, reasons[why].name, detail)
		}
		return f.startLogin(w, r, requestReturnTo(r))
	}
	return f.refuse(w, r, why, detail...)
}

// isNavigation reports whether r is a browser loading a page: GET, and HTML
// acceptable.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(v), "text/html") {
			return true
		}
	}
	return false
}

// refuse answers with the reason's status. A 401 carries the challenge (RFC 9110
// §11.6.1 requires one; the "Cookie" scheme names the cookie that is missing), a
// 503 a Retry-After. Every refusal is a security event, with the reason and
// details the filter chose, never a cookie, code or token.
func (f *oidcFilter) refuse(w http.ResponseWriter, r *http.Request, why reason, detail ...string) error {
	return f.refuseAs(w, r, reasons[why].name, reasons[why].status, detail)
}

// refuseAs is refuse with a reason outside the table (the provider's error codes).
func (f *oidcFilter) refuseAs(w http.ResponseWriter, r *http.Request, name string, st int, detail []string) error {
	switch st {
	case http.StatusUnauthorized:
		w.Header().Set("Www-Authenticate", f.challenge)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(int(retryMin/time.Second)))
	}
	w.Header().Set("Cache-Control", "no-store")
	f.security(r, name, detail)
	return &filter.Error{Status: st, Reason: name}
}

// security reports one refusal (filter.ReportSecurityEvent) with the details the
// filter chose.
func (f *oidcFilter) security(r *http.Request, name string, detail []string) {
	remote := r.RemoteAddr
	if info := proxy.InfoFrom(r.Context()); info != nil && info.ClientIP.IsValid() {
		remote = info.ClientIP.String()
	}
	msg := "oidc: " + name + " route=" + f.route
	for _, d := range detail {
		msg += " " + d
	}
	filter.ReportSecurityEvent(r.Context(), f.events, f.log, filter.SecurityEvent{
		Filter: Type, Kind: "auth_failure", Reason: name, Remote: remote, Detail: msg,
	})
}

// refreshDetail describes a failed refresh for the log: the OAuth error code when
// the provider sent one, else the kind of failure. Never the response body.
func refreshDetail(err error) []string {
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &re) && re.ErrorCode != "":
		return []string{"error=" + oauthCode(re.ErrorCode)}
	case errors.As(err, &re) && re.Response != nil:
		return []string{"status=" + strconv.Itoa(re.Response.StatusCode)}
	case errors.Is(err, errBadRefresh):
		return []string{"error=bad_id_token"}
	}
	return []string{"error=unreachable"}
}

// oauthCode keeps an OAuth error code (RFC 6749 §5.2: %x20-21 / %x23-5B / %x5D-7E)
// fit for a log line: known characters only, cut short.
func oauthCode(s string) string {
	if s == "" {
		return "none"
	}
	var b strings.Builder
	for i := 0; i < len(s) && i < 64; i++ {
		if c := s[i]; c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// Close stops discovery. The core calls it when the snapshot that built the filter
// is retired.
func (f *oidcFilter) Close() error {
	f.disc.close()
	f.client.CloseIdleConnections()
	return nil
}
