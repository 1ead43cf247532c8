// Package jwt is the "jwt" filter: it admits a request only with a valid JSON Web
// Token (RFC 7519) in "Authorization: Bearer" (RFC 6750 §2.1), signed (RFC 7515) by
// a key of one of the route's configured issuers, and passes chosen claims on to
// the upstream as headers (SM-DR21). Keys come from each issuer's JWK Set (RFC
// 7517), fetched and refreshed in the background or read from a local file.
// Optionally, a token's jti is remembered until the token expires and a second use
// is refused (MS-SS-8).
//
// Everything an attacker controls in a token is distrusted until the signature is
// checked, and even the choice of how to check it is not the token's alone: the
// algorithm must be allowed for the issuer and fit the type of the key its kid
// names (RFC 8725 §3.1), keys come only from configuration (never from the jku,
// x5u, jwk or x5c header parameters), and critical extensions are refused (RFC 7515
// §4.1.11). Every refusal is a 401 with a WWW-Authenticate challenge (RFC 6750 §3)
// and a security log line, never a 5xx.
//
// It is not for: authorization beyond "a valid token for this audience" (scopes
// and per-path rules are the edge authorization filter's), browser logins (the
// OIDC filter's), or minting tokens for upstreams (the token-exchange filter's).
package jwt

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// jwtFilter is immutable after Factory, except for the key sets its sources swap
// in and the replay cache, both safe for concurrent use.
type jwtFilter struct {
	route    string
	issuers  map[string]*issuer
	parser   *gojwt.Parser
	keyFunc  gojwt.Keyfunc // f.key as a value, made once rather than per request
	maxToken int
	optional bool
	leeway   time.Duration
	strip    []string // canonical names of every claimsToHeaders header
	replay   *replayCache
	cache    *verifiedCache // nil: off (replay detection, or cacheVerified: false)
	log      *slog.Logger
	events   filter.Events
	// challenges[r] is the WWW-Authenticate value for a refusal for reason r,
	// built once with the realm.
	challenges [numReasons]string
}

// issuer is one configured token issuer with its keys.
type issuer struct {
	name      string
	audiences []string
	algs      []string
	src       *source
	headers   []claimHeader
}

type claimHeader struct {
	claim  string
	header string // canonical
}

func (f *jwtFilter) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	tok, r0 := f.bearer(r)
	if r0 == reasonMissing && f.optional {
		// Unauthenticated, and allowed to be: but never with identity headers the
		// client wrote itself.
		return next.ServeHTTP(w, f.stripped(r))
	}
	if r0 != reasonNone {
		return f.reject(w, r, r0, nil)
	}
	var sum [32]byte
	if f.cache != nil {
		sum = tokenSum(tok)
		if v := f.cache.get(sum, time.Now(), f.leeway); v != nil {
			return f.admit(w, r, v.iss, v.id, next)
		}
	}
	c := &claims{ctx: r.Context()}
	if _, err := f.parser.ParseWithClaims(tok, c, f.keyFunc); err != nil {
		return f.reject(w, r, reasonOf(err, c), c)
	}
	if f.replay != nil {
		if rr := f.checkReplay(c); rr != reasonNone {
			return f.reject(w, r, rr, c)
		}
	}
	sub, _ := c.m["sub"].(string)
	id := &filter.Identity{Source: "jwt", Issuer: c.iss.name, Subject: sub, Claims: c.m}
	if f.cache != nil {
		if exp, err := c.m.GetExpirationTime(); err == nil && exp != nil {
			f.cache.put(sum, &verified{iss: c.iss, keys: c.keys, exp: exp.Time, id: id})
		}
	}
	return f.admit(w, r, c.iss, id, next)
}

// admit passes an accepted request on with its identity and claim headers.
func (f *jwtFilter) admit(w http.ResponseWriter, r *http.Request, iss *issuer, id *filter.Identity, next filter.Handler) error {
	r2 := filter.WithIdentity(r, id)
	if len(f.strip) > 0 {
		r2.Header = r.Header.Clone()
		f.stripHeaders(r2.Header)
		for _, m := range iss.headers {
			if s, ok := filter.ClaimHeaderValue(id.Claims[m.claim]); ok {
				r2.Header[m.header] = []string{s}
			}
		}
	}
	return next.ServeHTTP(w, r2)
}

// bearer finds the token. Only the Authorization header is read (RFC 6750 §2.1):
// tokens in query strings (§2.3) end up in logs and browser histories, and form
// bodies (§2.2) would make this filter read bodies. Another scheme (Basic, say)
// counts as no bearer token. Past the scheme, the size is checked before anything
// else looks at the value, so that a huge token costs no parsing.
func (f *jwtFilter) bearer(r *http.Request) (string, reason) {
	vals := r.Header["Authorization"]
	switch len(vals) {
	case 0:
		return "", reasonMissing
	case 1:
	default:
		// Two credentials: which one an upstream would believe is anyone's guess.
		return "", reasonMalformed
	}
	v := vals[0]
	// RFC 9110 §11.1: the auth-scheme is case-insensitive. RFC 6750 §2.1: one or
	// more spaces, then the token.
	if len(v) < len("Bearer ") || !strings.EqualFold(v[:len("Bearer")], "Bearer") || v[len("Bearer")] != ' ' {
		if len(v) == len("Bearer") && strings.EqualFold(v, "Bearer") {
			return "", reasonMalformed
		}
		return "", reasonMissing
	}
	if len(v) > f.maxToken+len("Bearer ")+16 {
		return "", reasonTooLarge // not worth trimming
	}
	tok := strings.Trim(v[len("Bearer "):], " ")
	switch {
	case tok == "":
		return "", reasonMalformed
	case len(tok) > f.maxToken:
		return "", reasonTooLarge
	}
	return tok, reasonNone
}

// stripped returns r without client-sent copies of the claim headers, cloning only
// when there is something to remove.
func (f *jwtFilter) stripped(r *http.Request) *http.Request {
	found := false
	for k := range r.Header {
		if f.mapped(k) {
			found = true
			break
		}
	}
	if !found {
		return r
	}
	r2 := r.WithContext(r.Context())
	r2.Header = r.Header.Clone()
	f.stripHeaders(r2.Header)
	return r2
}

// stripHeaders deletes every header that an upstream could take for a claim header.
func (f *jwtFilter) stripHeaders(h http.Header) {
	for k := range h {
		if f.mapped(k) {
			delete(h, k)
		}
	}
}

// mapped reports whether a request header name is, or could be read as, one of the
// claim headers (filter.SameHeaderName: any case, "_" for "-").
func (f *jwtFilter) mapped(name string) bool {
	for _, h := range f.strip {
		if filter.SameHeaderName(name, h) {
			return true
		}
	}
	return false
}

// key is the jwt.Keyfunc. It runs after the token is decoded and before its
// signature is checked, so everything it reads is unverified: it uses iss, alg and
// kid only to choose among keys from configuration, and the signature check that
// follows proves the choice. It refuses early, without spending a signature
// verification, whatever no key of ours could make valid.
func (f *jwtFilter) key(t *gojwt.Token) (any, error) {
	c := t.Claims.(*claims)
	c.keyLooked = true
	c.alg = t.Method.Alg()
	// RFC 7515 §4.1.11: a recipient MUST reject a JWS whose "crit" names
	// extensions it does not understand; this filter understands none.
	if _, ok := t.Header["crit"]; ok {
		return nil, rejections[reasonCrit]
	}
	if v, ok := t.Header["kid"]; ok {
		kid, isStr := v.(string)
		if !isStr {
			return nil, rejections[reasonMalformed]
		}
		c.kid = kid
	}
	name, err := c.m.GetIssuer()
	if err != nil {
		return nil, rejections[reasonBadClaims]
	}
	c.issName = name
	iss := f.issuers[name]
	if iss == nil {
		return nil, rejections[reasonWrongIssuer]
	}
	if !slices.Contains(iss.algs, c.alg) {
		return nil, rejections[reasonAlgNotAllowed]
	}
	// The kid is looked up among this issuer's keys only, never another issuer's:
	// one issuer must not be able to sign for another. jku, x5u, jwk and x5c are
	// not read at all (RFC 8725 §3.10: they would let the token choose its key).
	ks := iss.src.keys.Load()
	k, res := ks.lookup(c.kid, c.alg)
	if res == keyUnknown {
		// The issuer may have rotated keys since the last fetch.
		iss.src.awaitFetch(c.ctx)
		ks = iss.src.keys.Load()
		k, res = ks.lookup(c.kid, c.alg)
	}
	c.keys = ks
	switch res {
	case keyFound:
	case keyMismatch:
		// The kid exists but its key cannot verify this alg: an EC key named by a
		// token claiming RS256, say. Algorithm confusion, or a broken issuer.
		return nil, rejections[reasonKeyMismatch]
	default:
		return nil, rejections[reasonUnknownKid]
	}
	c.iss = iss
	return k.pub, nil
}

// checkReplay records the token's jti until the token expires (plus leeway, the
// longest it can still pass the exp check).
func (f *jwtFilter) checkReplay(c *claims) reason {
	jti, _ := c.m["jti"].(string)
	if jti == "" {
		// A route that asks for replay detection cannot accept a token that
		// cannot be told apart from its copies.
		return reasonNoJTI
	}
	exp, err := c.m.GetExpirationTime()
	if err != nil || exp == nil {
		return reasonBadClaims // the parser already required exp
	}
	// Key by issuer too: jti is unique per issuer only (RFC 7519 §4.1.7).
	switch f.replay.add(c.iss.name+"\x00"+jti, exp.Add(f.leeway), time.Now()) {
	case replaySeen:
		return reasonReplayed
	case replayFull:
		return reasonReplayFull
	}
	return reasonNone
}

// reject answers a refused request. It sets the challenge on w and returns a
// *filter.Error: the core's writeError (snapshot/serve.go) only sets its own
// headers (Content-Type, X-Content-Type-Options, and grpc-status for gRPC) on the
// same header map, so WWW-Authenticate set here reaches the client with the core's
// usual 401 body, access-log record and metric.
func (f *jwtFilter) reject(w http.ResponseWriter, r *http.Request, why reason, c *claims) error {
	w.Header()["Www-Authenticate"] = []string{f.challenges[why]}
	f.security(r, why, c)
	return &filter.Error{Status: http.StatusUnauthorized, Reason: reasons[why].name}
}

// security reports a refusal (filter.ReportSecurityEvent): the reason and what
// the token claimed about itself (issuer, kid, alg: unverified, cut short), never
// the token.
func (f *jwtFilter) security(r *http.Request, why reason, c *claims) {
	remote := r.RemoteAddr
	if info := proxy.InfoFrom(r.Context()); info != nil && info.ClientIP.IsValid() {
		remote = info.ClientIP.String()
	}
	detail := "jwt: " + reasons[why].name + " route=" + f.route
	if c != nil {
		for _, kv := range [...][2]string{{"issuer", c.issName}, {"kid", c.kid}, {"alg", c.alg}} {
			if kv[1] != "" {
				detail += " " + kv[0] + "=" + cut(kv[1], 128)
			}
		}
	}
	filter.ReportSecurityEvent(r.Context(), f.events, f.log, filter.SecurityEvent{
		Filter: Type, Kind: "auth_failure", Reason: reasons[why].name, Remote: remote, Detail: detail,
	})
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Close stops the background key refreshers. The core calls it when the snapshot
// that built the filter is retired.
func (f *jwtFilter) Close() error {
	for _, iss := range f.issuers {
		if iss.src != nil { // nil only when Factory failed half-way
			iss.src.Close()
		}
	}
	return nil
}

// claims is the per-request claims value handed to the parser. Besides the claims
// it carries what the key function learned, so that Validate can check iss and aud
// against the issuer whose key verified the token.
type claims struct {
	m   gojwt.MapClaims
	ctx context.Context // the request's: bounds a wait for a key refetch

	keyLooked         bool    // the key function ran (the header parsed and alg was known)
	iss               *issuer // set once a key was found
	keys              *keySet // the issuer's key set the key came from
	issName, kid, alg string  // unverified, for the log line
}

func (c *claims) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &c.m) }

func (c *claims) GetExpirationTime() (*gojwt.NumericDate, error) { return c.m.GetExpirationTime() }
func (c *claims) GetIssuedAt() (*gojwt.NumericDate, error)       { return c.m.GetIssuedAt() }
func (c *claims) GetNotBefore() (*gojwt.NumericDate, error)      { return c.m.GetNotBefore() }
func (c *claims) GetIssuer() (string, error)                     { return c.m.GetIssuer() }
func (c *claims) GetSubject() (string, error)                    { return c.m.GetSubject() }
func (c *claims) GetAudience() (gojwt.ClaimStrings, error)       { return c.m.GetAudience() }

// Validate runs after the signature check and the parser's exp/nbf/iat checks
// (RFC 7519 §4.1.4, §4.1.5, §4.1.6, with leeway). It checks iss (§4.1.1) against
// the issuer whose key verified the token, and that aud (§4.1.3) names one of that
// issuer's configured audiences: a token minted for another service must not be
// usable here.
func (c *claims) Validate() error {
	name, err := c.m.GetIssuer()
	if err != nil || c.iss == nil || name != c.iss.name {
		return rejections[reasonWrongIssuer]
	}
	aud, err := c.m.GetAudience()
	if err != nil {
		return rejections[reasonBadClaims]
	}
	for _, a := range aud {
		if slices.Contains(c.iss.audiences, a) {
			return nil
		}
	}
	return rejections[reasonWrongAudience]
}

// reasonOf maps a parser error to the reason reported. Errors of our own (from the
// key function and Validate) are found first; the rest are golang-jwt's.
func reasonOf(err error, c *claims) reason {
	var rej *rejection
	if errors.As(err, &rej) {
		return rej.r
	}
	switch {
	case errors.Is(err, gojwt.ErrTokenMalformed):
		return reasonMalformed
	case !c.keyLooked && (errors.Is(err, gojwt.ErrTokenSignatureInvalid) || errors.Is(err, gojwt.ErrTokenUnverifiable)):
		// Refused before any key was looked up: alg missing, unknown, or not
		// in any issuer's list ("none" and HS* land here).
		return reasonAlgNotAllowed
	case errors.Is(err, gojwt.ErrTokenSignatureInvalid):
		return reasonBadSignature
	case errors.Is(err, gojwt.ErrTokenExpired):
		return reasonExpired
	case errors.Is(err, gojwt.ErrTokenNotValidYet):
		return reasonNotYetValid
	case errors.Is(err, gojwt.ErrTokenUsedBeforeIssued):
		return reasonIssuedInFuture
	case errors.Is(err, gojwt.ErrTokenRequiredClaimMissing):
		return reasonNoExp
	case errors.Is(err, gojwt.ErrInvalidType):
		return reasonBadClaims
	}
	return reasonInvalid
}

// reason is why a request was refused; reasons[r] gives its name (the Reason of
// the *filter.Error, in access logs and metrics) and the error_description of the
// challenge.
type reason int

const (
	reasonNone reason = iota
	reasonMissing
	reasonMalformed
	reasonTooLarge
	reasonAlgNotAllowed
	reasonCrit
	reasonWrongIssuer
	reasonUnknownKid
	reasonKeyMismatch
	reasonBadSignature
	reasonExpired
	reasonNotYetValid
	reasonIssuedInFuture
	reasonNoExp
	reasonBadClaims
	reasonWrongAudience
	reasonNoJTI
	reasonReplayed
	reasonReplayFull
	reasonInvalid
	numReasons
)

// Descriptions are fixed text, so that nothing from the request is reflected, and
// use only the characters RFC 6750 §3 allows in error_description.
var reasons = [numReasons]struct{ name, desc string }{
	reasonNone:           {"", ""},
	reasonMissing:        {"jwt_missing_token", ""},
	reasonMalformed:      {"jwt_malformed", "the token is malformed"},
	reasonTooLarge:       {"jwt_too_large", "the token is too large"},
	reasonAlgNotAllowed:  {"jwt_alg_not_allowed", "the signing algorithm is not accepted"},
	reasonCrit:           {"jwt_crit_unsupported", "the token has critical header parameters that are not understood"},
	reasonWrongIssuer:    {"jwt_wrong_issuer", "the token issuer is not accepted"},
	reasonUnknownKid:     {"jwt_unknown_kid", "the signing key is not known"},
	reasonKeyMismatch:    {"jwt_key_mismatch", "the signing algorithm does not fit the key"},
	reasonBadSignature:   {"jwt_bad_signature", "the token signature is invalid"},
	reasonExpired:        {"jwt_expired", "the token expired"},
	reasonNotYetValid:    {"jwt_not_yet_valid", "the token is not valid yet"},
	reasonIssuedInFuture: {"jwt_issued_in_future", "the token is issued in the future"},
	reasonNoExp:          {"jwt_missing_exp", "the token has no expiration time"},
	reasonBadClaims:      {"jwt_bad_claims", "the token claims are malformed"},
	reasonWrongAudience:  {"jwt_wrong_audience", "the token is not meant for this audience"},
	reasonNoJTI:          {"jwt_missing_jti", "the token has no jti"},
	reasonReplayed:       {"jwt_replayed", "the token was already used"},
	reasonReplayFull:     {"jwt_replay_cache_full", "the token cannot be checked for reuse now"},
	reasonInvalid:        {"jwt_invalid", "the token is invalid"},
}

// challenge is the WWW-Authenticate value for a refusal (RFC 6750 §3). A request
// without a token gets no error code (§3.1: the client may not know it needs one);
// every other refusal is invalid_token.
func challenge(realm string, r reason) string {
	c := `Bearer realm="` + realm + `"`
	if r == reasonMissing {
		return c
	}
	return c + `, error="invalid_token", error_description="` + reasons[r].desc + `"`
}

// rejection is the error the key function and Validate return, one value per
// reason made once, so that refusing costs no allocation of ours.
type rejection struct{ r reason }

func (e *rejection) Error() string { return reasons[e.r].name }

var rejections = func() (a [numReasons]*rejection) {
	for i := range a {
		a[i] = &rejection{reason(i)}
	}
	return a
}()
