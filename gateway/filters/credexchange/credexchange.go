// Package credexchange is the "credexchange" filter of the egress: services
// never hold external secrets (SP 800-204 MS-SS-12; DESIGN "egress"). For a
// request leaving the mesh it finds the caller (the authenticated identity a
// filter before it attached, else the SPIFFE ID of the mTLS peer), picks the
// first configured rule whose callers and hosts match, removes every credential
// the caller sent itself (Authorization, Proxy-Authorization, and every header
// and query parameter any rule injects), and adds the rule's credential: an API
// key, a bearer token or basic-auth pair from files, an OAuth 2.0
// client-credentials token, or a token obtained by exchanging the caller's own
// token (RFC 8693). Fetching and caching tokens is the credexchange package's.
//
// It is not for: deciding whether a caller may reach a destination (the
// egress's allow rules), authenticating callers (mTLS, jwt), or minting
// internal tokens (tokenmint).
package credexchange

import (
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	cx "github.com/portcullis/portcullis/credexchange"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/listener"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// Reasons reported with the *filter.Error values this filter returns.
const (
	ReasonNoMatch          = "credexchange_no_match"          // 403: requireMatch, and no rule fits
	ReasonNoCallerToken    = "credexchange_no_caller_token"   // 401: a tokenExchange rule, and no bearer token to exchange
	ReasonTokenUnavailable = "credexchange_token_unavailable" // 502: the token endpoint gave no token, and none is cached
)

// injector is immutable after Factory; its sources cache tokens.
type injector struct {
	route        string
	rules        []*rule
	requireMatch bool
	stripHeaders []string // canonical names, removed under any spelling
	stripQuery   []string
	closers      []func() error
	events       filter.Events
	log          *slog.Logger
}

var (
	_ filter.Filter              = (*injector)(nil)
	_ interface{ Close() error } = (*injector)(nil)
)

type rule struct {
	index          int
	anyCaller      bool
	callers        []string
	callerPrefixes []string // each ends in "/"
	hosts          []string // lower case
	hostSuffixes   []string // ".example.com"
	source         source
}

// source gives a rule's credential for one request.
type source interface {
	credential(r *http.Request) (string, error)
	header() string // where the credential goes; "" when query is set
	query() string
}

func (f *injector) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	caller := callerOf(r)
	ru := f.match(caller, hostOf(r))
	if ru == nil {
		if f.requireMatch {
			return f.refuse(r, caller, http.StatusForbidden, ReasonNoMatch)
		}
		return next.ServeHTTP(w, f.rewrite(r, nil, ""))
	}
	value, err := ru.source.credential(r)
	if err != nil {
		if errors.Is(err, errNoCallerToken) {
			return f.refuse(r, caller, http.StatusUnauthorized, ReasonNoCallerToken)
		}
		if ctxErr := r.Context().Err(); ctxErr != nil {
			return &filter.Error{Status: 499, Reason: "client_gone", Err: ctxErr}
		}
		// err is a *cx.FetchError: endpoint, status, OAuth error code; no secret.
		f.log.LogAttrs(r.Context(), slog.LevelWarn, "credexchange: no token for the request",
			slog.Int("rule", ru.index), slog.String("caller", cut(caller, 256)), slog.String("err", err.Error()))
		return &filter.Error{Status: http.StatusBadGateway, Reason: ReasonTokenUnavailable, Err: err}
	}
	return next.ServeHTTP(w, f.rewrite(r, ru.source, value))
}

// callerOf is the caller's identity: the subject of the identity a filter
// before this one authenticated, else the SPIFFE ID (URI SAN) of the client
// certificate. The core keeps its own reading of the peer certificate to
// itself (snapshot.peerIdentity, for the access log), so the filter reads the
// certificate through listener.TLSState, as that does; unlike it, a
// certificate without a spiffe:// URI gives no caller (no common-name
// fallback), since rules name SPIFFE IDs.
func callerOf(r *http.Request) string {
	if id, ok := filter.IdentityFrom(r.Context()); ok && id.Subject != "" {
		return id.Subject
	}
	if st := listener.TLSState(r); st != nil && len(st.PeerCertificates) > 0 {
		return spiffeID(st.PeerCertificates[0])
	}
	return ""
}

func spiffeID(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}

// hostOf is the destination host, lower case, without port or trailing dot.
func hostOf(r *http.Request) string {
	h := r.Host
	if h == "" && r.URL != nil {
		h = r.URL.Host
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func (f *injector) match(caller, host string) *rule {
	if caller == "" {
		return nil // an unidentified caller gets no one's credentials
	}
	for _, ru := range f.rules {
		if ru.matchesCaller(caller) && ru.matchesHost(host) {
			return ru
		}
	}
	return nil
}

func (ru *rule) matchesCaller(c string) bool {
	if ru.anyCaller {
		return true
	}
	for _, x := range ru.callers {
		if c == x {
			return true
		}
	}
	for _, p := range ru.callerPrefixes {
		if strings.HasPrefix(c, p) && len(c) > len(p) {
			return true
		}
	}
	return false
}

func (ru *rule) matchesHost(h string) bool {
	if len(ru.hosts) == 0 && len(ru.hostSuffixes) == 0 {
		return true
	}
	for _, x := range ru.hosts {
		if h == x {
			return true
		}
	}
	for _, s := range ru.hostSuffixes {
		if strings.HasSuffix(h, s) && len(h) > len(s) {
			return true
		}
	}
	return false
}

// rewrite returns a copy of r without any credential the caller sent, and with
// value in src's header or query parameter when src is not nil.
func (f *injector) rewrite(r *http.Request, src source, value string) *http.Request {
	r2 := r.WithContext(r.Context())
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	for k := range h {
		for _, s := range f.stripHeaders {
			if filter.SameHeaderName(k, s) {
				delete(h, k)
				break
			}
		}
	}
	param := ""
	if src != nil {
		if hdr := src.header(); hdr != "" {
			h[hdr] = []string{value}
		}
		param = src.query()
	}
	r2.Header = h
	if r.URL != nil && (len(f.stripQuery) > 0 || param != "") {
		u := *r.URL
		q := u.Query()
		for _, p := range f.stripQuery {
			q.Del(p)
		}
		if param != "" {
			q.Set(param, value)
		}
		u.RawQuery = q.Encode()
		r2.URL = &u
	}
	return r2
}

func (f *injector) refuse(r *http.Request, caller string, status int, reason string) error {
	remote := r.RemoteAddr
	if info := proxy.InfoFrom(r.Context()); info != nil && info.ClientIP.IsValid() {
		remote = info.ClientIP.String()
	}
	filter.ReportSecurityEvent(r.Context(), f.events, f.log, filter.SecurityEvent{
		Filter: Type, Kind: "credexchange_refused", Reason: reason, Remote: remote,
		Detail: "credexchange: " + reason + " route=" + f.route + " caller=" + cut(caller, 256) + " host=" + cut(hostOf(r), 256),
	})
	return &filter.Error{Status: status, Reason: reason}
}

// Close stops the token fetches in flight.
func (f *injector) Close() error {
	for _, c := range f.closers {
		_ = c()
	}
	return nil
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// staticSource is a credential read from files when the config was loaded.
type staticSource struct {
	hdr, param string
	value      string
}

func (s staticSource) credential(*http.Request) (string, error) { return s.value, nil }
func (s staticSource) header() string                           { return s.hdr }
func (s staticSource) query() string                            { return s.param }

type clientCredentialsSource struct{ src *cx.ClientCredentials }

func (s clientCredentialsSource) credential(r *http.Request) (string, error) {
	t, err := s.src.Token(r.Context())
	if err != nil {
		return "", err
	}
	return t.HeaderValue(), nil
}
func (clientCredentialsSource) header() string { return "Authorization" }
func (clientCredentialsSource) query() string  { return "" }

type exchangeSource struct{ src *cx.TokenExchange }

var errNoCallerToken = errors.New("the caller sent no bearer token to exchange")

func (s exchangeSource) credential(r *http.Request) (string, error) {
	tok := bearerOf(r)
	if tok == "" {
		return "", errNoCallerToken
	}
	var notAfter time.Time
	if id, ok := filter.IdentityFrom(r.Context()); ok {
		if exp, ok := id.Claims["exp"].(float64); ok {
			notAfter = time.Unix(int64(exp), 0)
		}
	}
	t, err := s.src.Token(r.Context(), tok, notAfter)
	if err != nil {
		return "", err
	}
	return t.HeaderValue(), nil
}
func (exchangeSource) header() string { return "Authorization" }
func (exchangeSource) query() string  { return "" }

// bearerOf is the token of the request's one "Authorization: Bearer" header.
func bearerOf(r *http.Request) string {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return ""
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}
