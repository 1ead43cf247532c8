// Package tokenmint is the "tokenmint" filter: user credentials stop at the edge
// (SP 800-204 MS-SS-2, MS-SS-10, MS-SS-12). For an authenticated request it
// removes the caller's Authorization header and chosen cookies (the OIDC session
// among them), and sends the upstream a short-lived internal token instead, minted
// by the gateway (gateway/edgetoken): issued by the edge, for one audience, with
// the caller's subject, the caller's scopes narrowed to the route's allow-list and
// selected claims. Upstreams verify it against the key set the jwks filter
// publishes.
//
// Minted tokens are cached per caller, audience and scope set for half their
// lifetime, so that a busy caller costs a map lookup rather than a signature.
//
// It is not for: authenticating the caller (jwt, oidc run before it), deciding
// whether the caller may reach the route (authz), or exchanging tokens with an
// identity provider (RFC 8693 token exchange).
package tokenmint

import (
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis/portcullis/gateway/edgetoken"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// Reasons reported with the *filter.Error values this filter returns.
const (
	ReasonUnauthenticated   = "tokenmint_unauthenticated"    // 401: no caller, and allowAnonymous is off
	ReasonNoSubject         = "tokenmint_no_subject"         // 403: the caller has no subject to mint for
	ReasonInsufficientScope = "tokenmint_insufficient_scope" // 403: requireScopes, and none of the route's scopes
	ReasonMintFailed        = "tokenmint_failed"             // 500: signing failed
)

// minter is immutable after Factory, except for its token cache.
type minter struct {
	route    string
	signer   *edgetoken.Signer
	issuer   string
	audience string
	ttl      time.Duration
	scopes   edgetoken.ScopeSet // the route's allow-list
	// requireScopes refuses a caller holding none of scopes.
	requireScopes  bool
	allowAnonymous bool
	copyClaims     []filter.ClaimPath
	header         string // canonical
	bearer         bool   // the header is Authorization: its value is "Bearer <token>"
	cookies        cookieFilter
	cache          *tokenCache // nil: no caching
	now            func() time.Time

	challenge401, challengeScope string
	events                       filter.Events
	log                          *slog.Logger
}

var _ filter.Filter = (*minter)(nil)

func (f *minter) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	id, ok := filter.IdentityFrom(r.Context())
	if !ok {
		if !f.allowAnonymous {
			w.Header()["Www-Authenticate"] = []string{f.challenge401}
			return f.refuse(r, nil, http.StatusUnauthorized, ReasonUnauthenticated)
		}
		return next.ServeHTTP(w, f.rewrite(r, ""))
	}
	if id.Subject == "" {
		// A token must say whom it stands for; an empty sub would stand for
		// everyone the upstream has no name for.
		return f.refuse(r, id, http.StatusForbidden, ReasonNoSubject)
	}
	mask := f.scopes.Mask(id)
	if f.requireScopes && mask == 0 {
		w.Header()["Www-Authenticate"] = []string{f.challengeScope}
		return f.refuse(r, id, http.StatusForbidden, ReasonInsufficientScope)
	}
	value, err := f.token(id, mask)
	if err != nil {
		f.log.LogAttrs(r.Context(), slog.LevelError, "tokenmint: minting failed", slog.String("err", err.Error()))
		return &filter.Error{Status: http.StatusInternalServerError, Reason: ReasonMintFailed, Err: err}
	}
	return next.ServeHTTP(w, f.rewrite(r, value))
}

// token returns the header value carrying a token for the caller: a cached one
// with at least half its lifetime left, or a new one.
func (f *minter) token(id *filter.Identity, mask uint64) (string, error) {
	now := f.now()
	var keyBuf [256]byte
	key := f.cacheKey(keyBuf[:0], id, mask)
	if f.cache != nil {
		if v, ok := f.cache.get(key, now); ok {
			return v, nil
		}
	}
	c := edgetoken.Claims{
		Issuer: f.issuer, Subject: id.Subject, Audience: f.audience,
		Scopes: f.scopes.Names(mask), TTL: f.ttl,
	}
	for i := range f.copyClaims {
		if v, ok := f.copyClaims[i].Lookup(id.Claims); ok {
			if c.Extra == nil {
				c.Extra = make(map[string]any, len(f.copyClaims))
			}
			c.Extra[f.copyClaims[i].Name()] = v
		}
	}
	tok, err := f.signer.MintAt(c, now)
	if err != nil {
		return "", err
	}
	if f.bearer {
		tok = "Bearer " + tok
	}
	if f.cache != nil {
		// Half the lifetime: an upstream always gets a token with at least
		// ttl/2 left, time enough for retries and clock skew.
		f.cache.put(string(key), tok, now.Add(f.ttl/2), now)
	}
	return tok, nil
}

// cacheKey identifies everything a minted token depends on besides the route's
// config: the caller's issuer (two issuers may use the same subject for two
// people), subject, the narrowed scopes, and the copied claims' values. Parts
// are length-prefixed, so no two callers share a key.
func (f *minter) cacheKey(b []byte, id *filter.Identity, mask uint64) []byte {
	b = appendPart(b, id.Source)
	b = appendPart(b, id.Issuer)
	b = appendPart(b, id.Subject)
	b = binary.LittleEndian.AppendUint64(b, mask)
	for i := range f.copyClaims {
		v, ok := f.copyClaims[i].Lookup(id.Claims)
		switch s, isStr := v.(string); {
		case !ok:
			b = append(b, 'm')
		case isStr:
			b = append(b, 's')
			b = appendPart(b, s)
		default:
			// Numbers, lists, objects: rare in copied claims; their JSON form.
			j, err := json.Marshal(v)
			if err != nil {
				j = []byte{0} // Mint will refuse the value anyway
			}
			b = append(b, 'j')
			b = appendPart(b, string(j))
		}
	}
	return b
}

func appendPart(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// rewrite returns a copy of r without the caller's credentials: no Authorization
// (nor Proxy-Authorization), no client-sent copy of the token header, none of the
// configured cookies; and with the minted token when value is not "".
func (f *minter) rewrite(r *http.Request, value string) *http.Request {
	r2 := r.WithContext(r.Context())
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	for k, vs := range h {
		switch {
		case filter.SameHeaderName(k, "Authorization") || filter.SameHeaderName(k, "Proxy-Authorization") || filter.SameHeaderName(k, f.header):
			delete(h, k)
		case f.cookies.active() && strings.EqualFold(k, "Cookie"):
			// Under any spelling of the name: a filter before this one may have
			// written a key that is not canonical.
			kept := vs[:0] // h is a clone: its slices are ours
			for _, c := range vs {
				if rest, left := f.cookies.strip(c); left {
					kept = append(kept, rest)
				}
			}
			if len(kept) == 0 {
				delete(h, k)
			} else {
				h[k] = kept
			}
		}
	}
	if value != "" {
		h[f.header] = []string{value}
	}
	r2.Header = h
	return r2
}

// refuse reports a refusal and returns its error.
func (f *minter) refuse(r *http.Request, id *filter.Identity, status int, reason string) error {
	remote := r.RemoteAddr
	if info := proxy.InfoFrom(r.Context()); info != nil && info.ClientIP.IsValid() {
		remote = info.ClientIP.String()
	}
	detail := "tokenmint: " + reason + " route=" + f.route + " audience=" + f.audience
	if id != nil {
		detail += " issuer=" + cut(id.Issuer, 128) + " sub=" + cut(id.Subject, 128)
	}
	filter.ReportSecurityEvent(r.Context(), f.events, f.log, filter.SecurityEvent{
		Filter: Type, Kind: "tokenmint_refused", Reason: reason, Remote: remote, Detail: detail,
	})
	return &filter.Error{Status: status, Reason: reason}
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// cookieFilter removes cookies by name: exact names, and prefixes written with a
// trailing "*" (a session split over "session.0", "session.1", ...); "*" alone
// removes every cookie.
type cookieFilter struct {
	all      bool
	names    []string
	prefixes []string
}

func (c *cookieFilter) active() bool { return c.all || len(c.names) > 0 || len(c.prefixes) > 0 }

func (c *cookieFilter) drops(name string) bool {
	if c.all {
		return true
	}
	for _, n := range c.names {
		if name == n { // cookie names are case-sensitive (RFC 6265 §5.4)
			return true
		}
	}
	for _, p := range c.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// strip removes the dropped cookies from one Cookie header value ("a=1; b=2",
// RFC 6265 §4.2.1) and reports whether any cookie is left. The pairs it keeps are
// kept byte for byte; a pair it cannot read (no "=") is kept too, as the
// upstream would see it.
func (c *cookieFilter) strip(v string) (string, bool) {
	if c.all {
		return "", false
	}
	var b strings.Builder
	changed := false
	rest := v
	for rest != "" {
		var pair string
		pair, rest, _ = strings.Cut(rest, ";")
		pair = strings.Trim(pair, " \t")
		if pair == "" {
			continue
		}
		name, _, _ := strings.Cut(pair, "=")
		if c.drops(strings.Trim(name, " \t")) {
			changed = true
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(pair)
	}
	if !changed {
		return v, true
	}
	return b.String(), b.Len() > 0
}
