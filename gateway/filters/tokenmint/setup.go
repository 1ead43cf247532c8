package tokenmint

import (
	"log/slog"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/edgetoken"
	"github.com/portcullis/portcullis/gateway/filter"
)

// Type is the name under which the filter is registered ("type: tokenmint" in a Route rule).
const Type = "tokenmint"

func init() { filter.Register(Type, Factory) }

// Defaults and bounds of the config.
const (
	DefaultTTL       = time.Minute
	MinTTL           = 5 * time.Second
	MaxTTL           = edgetoken.MaxTTL
	DefaultCacheSize = 10_000
	MaxCacheSize     = 1_000_000
	DefaultRealm     = "portcullis"
)

// Config is the filter's config as written in a Route rule.
type Config struct {
	// KeyFile is a PEM file of private keys (EC P-256 or RSA 2048+); the first
	// signs, all are published by the jwks filter. Required.
	KeyFile string `yaml:"keyFile"`
	// Issuer is the iss of minted tokens ("https://edge.portcullis.internal"). Required.
	Issuer string `yaml:"issuer"`
	// Audience is the aud of minted tokens: the upstream service. Required.
	Audience string `yaml:"audience"`
	// Scopes is the route's allow-list: a minted token carries the caller's
	// scopes that are in it, and no other. None: tokens carry no scope.
	Scopes []string `yaml:"scopes,omitempty"`
	// RequireScopes refuses (403) a caller that holds none of Scopes.
	RequireScopes bool `yaml:"requireScopes,omitempty"`
	// TTL is the lifetime of a minted token. Default 60s, 5s to 15m.
	TTL *config.Duration `yaml:"ttl,omitempty"`
	// CopyClaims are claims of the caller copied into the token under the same
	// name; dotted paths reach into objects ("org.id").
	CopyClaims []string `yaml:"copyClaims,omitempty"`
	// Header carries the token. Default Authorization, as "Bearer <token>"; any
	// other header carries the token alone.
	Header string `yaml:"header,omitempty"`
	// StripCookies are cookies removed before the request goes upstream: names,
	// prefixes ending in "*", or "*" for every cookie. List the OIDC session
	// cookies here.
	StripCookies []string `yaml:"stripCookies,omitempty"`
	// AllowAnonymous passes unauthenticated requests on, stripped, without a
	// token, instead of refusing them with 401.
	AllowAnonymous bool `yaml:"allowAnonymous,omitempty"`
	// CacheSize bounds the cache of minted tokens. Default 10000; 0 disables it.
	CacheSize *int `yaml:"cacheSize,omitempty"`
	// Realm is the realm of the WWW-Authenticate challenge. Default "portcullis".
	Realm string `yaml:"realm,omitempty"`
}

// Factory decodes and checks the config, loads the key file (shared with every
// other filter naming it, see edgetoken.Load) and builds the filter.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	f := &minter{
		route:          b.Route,
		issuer:         cfg.Issuer,
		audience:       cfg.Audience,
		ttl:            DefaultTTL,
		requireScopes:  cfg.RequireScopes,
		allowAnonymous: cfg.AllowAnonymous,
		header:         "Authorization",
		bearer:         true,
		now:            time.Now,
		events:         b.Events,
		log:            b.LoggerFor(Type),
	}
	var probs filter.Problems
	fail := probs.Add

	if cfg.Issuer == "" {
		fail("issuer", "required: the iss of minted tokens, such as https://edge.portcullis.internal")
	} else if !printable(cfg.Issuer) {
		fail("issuer", "must be printable ASCII")
	}
	if cfg.Audience == "" {
		// A token for no one in particular would be accepted by every service
		// that trusts the edge (RFC 8725 §3.9).
		fail("audience", "required: the service the tokens are for")
	} else if !printable(cfg.Audience) {
		fail("audience", "must be printable ASCII")
	}
	for i, s := range cfg.Scopes {
		if _, err := f.scopes.Add(s); err != nil {
			fail("scopes["+strconv.Itoa(i)+"]", "%v", err)
		}
	}
	if cfg.RequireScopes && len(cfg.Scopes) == 0 {
		fail("requireScopes", "needs scopes: the allow-list a caller must hold one of")
	}
	if d := cfg.TTL; d != nil {
		if d.D() < MinTTL || d.D() > MaxTTL {
			fail("ttl", "%v is outside %v to %v", d.D(), MinTTL, MaxTTL)
		}
		f.ttl = d.D()
	}
	for i, name := range cfg.CopyClaims {
		field := "copyClaims[" + strconv.Itoa(i) + "]"
		switch {
		case name == "":
			fail(field, "must not be empty")
		case slices.Contains(edgetoken.ReservedClaims, name):
			fail(field, "%q is set by the minter itself", name)
		case slices.ContainsFunc(f.copyClaims, func(c filter.ClaimPath) bool { return c.Name() == name }):
			fail(field, "%q is listed twice", name)
		default:
			f.copyClaims = append(f.copyClaims, filter.NewClaimPath(name))
		}
	}
	if cfg.Header != "" {
		h := textproto.CanonicalMIMEHeaderKey(cfg.Header)
		switch {
		case !httpguts.ValidHeaderFieldName(cfg.Header):
			fail("header", "%q is not a valid header name", cfg.Header)
		case h != "Authorization" && filter.ReservedRequestHeader(h):
			// Authorization is where the token goes by default; the other reserved
			// headers frame, route or carry other credentials.
			fail("header", "%s frames, routes or carries other credentials and cannot carry the token", h)
		}
		f.header, f.bearer = h, h == "Authorization"
	}
	for i, c := range cfg.StripCookies {
		field := "stripCookies[" + strconv.Itoa(i) + "]"
		switch name, prefix := strings.CutSuffix(c, "*"); {
		case c == "*":
			f.cookies.all = true
		case !validCookieName(name):
			fail(field, "%q is not a cookie name (an RFC 9110 token, optionally followed by *)", c)
		case prefix:
			f.cookies.prefixes = append(f.cookies.prefixes, name)
		default:
			f.cookies.names = append(f.cookies.names, name)
		}
	}
	size := DefaultCacheSize
	if p := cfg.CacheSize; p != nil {
		if *p < 0 || *p > MaxCacheSize {
			fail("cacheSize", "%d is outside 0 to %d", *p, MaxCacheSize)
		}
		size = *p
	}
	realm := DefaultRealm
	if cfg.Realm != "" {
		if !filter.Quotable(cfg.Realm) {
			fail("realm", "must be printable ASCII without '\"' or '\\'")
		}
		realm = cfg.Realm
	}
	if cfg.KeyFile == "" {
		fail("keyFile", "required: a PEM file of the private keys that sign")
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	signer, err := edgetoken.Load(cfg.KeyFile)
	if err != nil {
		fail("keyFile", "%v", err)
		return nil, probs.Err()
	}
	f.signer = signer
	warnIfExposed(f.log, cfg.KeyFile)
	if size > 0 {
		f.cache = newTokenCache(size)
	}
	f.challenge401 = `Bearer realm="` + realm + `"`
	f.challengeScope = `Bearer realm="` + realm + `", error="insufficient_scope", ` +
		`error_description="the token lacks every scope this route accepts", scope="` + strings.Join(cfg.Scopes, " ") + `"`
	return f, nil
}

// warnIfExposed logs a warning when others than the key file's owner may read it.
func warnIfExposed(log *slog.Logger, path string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("tokenmint: the key file can be read by group or others; make it 0600 or 0400",
			"keyFile", path, "mode", fi.Mode().Perm().String())
	}
}

// validCookieName: an RFC 6265 §4.1.1 cookie-name is a token (RFC 9110 §5.6.2),
// the grammar of a header field name too.
func validCookieName(s string) bool { return httpguts.ValidHeaderFieldName(s) }

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
