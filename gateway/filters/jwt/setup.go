package jwt

import (
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
)

// Type is the name under which the filter is registered ("type: jwt" in a Route rule).
const Type = "jwt"

func init() { filter.Register(Type, Factory) }

// Defaults and bounds of the config.
const (
	DefaultLeeway          = 30 * time.Second
	MaxLeeway              = 5 * time.Minute
	DefaultMaxTokenBytes   = 8 << 10
	MinMaxTokenBytes       = 256
	MaxMaxTokenBytes       = 64 << 10
	DefaultRefreshInterval = 10 * time.Minute
	MinRefreshInterval     = 30 * time.Second
	MaxRefreshInterval     = 24 * time.Hour
	DefaultMaxJTIs         = 100_000
	MaxMaxJTIs             = 10_000_000
	DefaultMaxCachedTokens = 10_000
	MaxMaxCachedTokens     = 1_000_000
	DefaultRealm           = "portcullis"
)

// Config is the filter's config as written in a Route rule.
type Config struct {
	// Issuers whose tokens are accepted; at least one.
	Issuers []IssuerConfig `yaml:"issuers"`
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s, at most 5m.
	Leeway *config.Duration `yaml:"leeway,omitempty"`
	// MaxTokenBytes caps the token's length, checked before it is parsed.
	// Default 8192, 256 to 65536.
	MaxTokenBytes *int `yaml:"maxTokenBytes,omitempty"`
	// Optional lets requests without a bearer token through, unauthenticated. A
	// token that is present must still be valid.
	Optional bool `yaml:"optional,omitempty"`
	// ReplayDetection refuses a token whose jti was seen before within its
	// lifetime, and tokens without a jti.
	ReplayDetection bool `yaml:"replayDetection,omitempty"`
	// MaxJTIs bounds the replay cache. Default 100000. Only with replayDetection.
	MaxJTIs *int `yaml:"maxJTIs,omitempty"`
	// CacheVerified keeps tokens that passed every check (by SHA-256), so that
	// their next uses skip the signature check; exp is still checked on every use
	// and a key-set change empties it. Default true; always off with
	// replayDetection.
	CacheVerified *bool `yaml:"cacheVerified,omitempty"`
	// MaxCachedTokens bounds that cache. Default 10000, 2 to 1000000.
	MaxCachedTokens *int `yaml:"maxCachedTokens,omitempty"`
	// Realm is the realm of the WWW-Authenticate challenge. Default "portcullis".
	Realm string `yaml:"realm,omitempty"`
}

// IssuerConfig is one accepted token issuer.
type IssuerConfig struct {
	// Issuer is the exact iss of its tokens. Required, unique in the filter.
	Issuer string `yaml:"issuer"`
	// Audiences: a token's aud must contain at least one. At least one is required.
	Audiences []string `yaml:"audiences"`
	// Algorithms the issuer signs with; at least one of RS256, RS384, RS512, PS256,
	// PS384, PS512, ES256, ES384, ES512, EdDSA.
	Algorithms []string `yaml:"algorithms"`
	// JWKSURI is the issuer's JWK Set, https (http only to a loopback address).
	JWKSURI string `yaml:"jwksURI,omitempty"`
	// JWKSFile is a local JWK Set, instead of JWKSURI.
	JWKSFile string `yaml:"jwksFile,omitempty"`
	// RefreshInterval is how often the key set is fetched (or the file re-read).
	// Default 10m, 30s to 24h.
	RefreshInterval *config.Duration `yaml:"refreshInterval,omitempty"`
	// ClaimsToHeaders passes claims of an accepted token to the upstream.
	ClaimsToHeaders []ClaimToHeader `yaml:"claimsToHeaders,omitempty"`
}

// ClaimToHeader maps one top-level claim to a request header.
type ClaimToHeader struct {
	Claim  string `yaml:"claim"`
	Header string `yaml:"header"`
}

// refused explains why an algorithm can never be allowed, or returns "". Case is
// ignored so that "None" or "hs256" get the explanation, not "unsupported".
func refused(alg string) string {
	switch u := strings.ToUpper(alg); {
	case u == "NONE":
		return "an unsigned token proves nothing (RFC 8725 §3.2)"
	case strings.HasPrefix(u, "HS"):
		// With HMAC the verification key is the signing key: a filter that
		// accepted HS* next to public keys could be fed a token signed with the
		// public key itself as the HMAC secret (RFC 8725 §2.1, §3.1).
		return "HMAC needs a shared secret, and public keys must never be used as one (RFC 8725 §3.1)"
	}
	return ""
}

// Factory decodes and checks the config and builds the filter. It reads local key
// files and persisted key sets, and starts one background refresher per issuer; it
// never waits on the network.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	f := &jwtFilter{
		route:    b.Route,
		events:   b.Events,
		issuers:  map[string]*issuer{},
		maxToken: DefaultMaxTokenBytes,
		optional: cfg.Optional,
		leeway:   DefaultLeeway,
		log:      b.LoggerFor(Type),
	}
	var probs filter.Problems
	fail := probs.Add

	if cfg.Leeway != nil {
		if d := cfg.Leeway.D(); d > MaxLeeway {
			fail("leeway", "%v is more than the %v allowed: clocks that far apart need fixing, not tolerating", d, MaxLeeway)
		} else {
			f.leeway = d
		}
	}
	if p := cfg.MaxTokenBytes; p != nil {
		if *p < MinMaxTokenBytes || *p > MaxMaxTokenBytes {
			fail("maxTokenBytes", "%d is outside %d to %d", *p, MinMaxTokenBytes, MaxMaxTokenBytes)
		} else {
			f.maxToken = *p
		}
	}
	maxJTIs := DefaultMaxJTIs
	if p := cfg.MaxJTIs; p != nil {
		switch {
		case !cfg.ReplayDetection:
			fail("maxJTIs", "only meaningful with replayDetection: true")
		case *p < 1 || *p > MaxMaxJTIs:
			fail("maxJTIs", "%d is outside 1 to %d", *p, MaxMaxJTIs)
		default:
			maxJTIs = *p
		}
	}
	if cfg.ReplayDetection {
		f.replay = newReplayCache(maxJTIs)
	}
	cacheOn := cfg.CacheVerified == nil || *cfg.CacheVerified
	maxCached := DefaultMaxCachedTokens
	if p := cfg.MaxCachedTokens; p != nil {
		switch {
		case !cacheOn:
			fail("maxCachedTokens", "only meaningful with cacheVerified: true")
		case *p < 2 || *p > MaxMaxCachedTokens:
			fail("maxCachedTokens", "%d is outside 2 to %d", *p, MaxMaxCachedTokens)
		default:
			maxCached = *p
		}
	}
	if cfg.ReplayDetection && cfg.CacheVerified != nil && *cfg.CacheVerified {
		fail("cacheVerified", "cannot be used with replayDetection: every second use of a token is refused there")
	}
	if cacheOn && !cfg.ReplayDetection {
		f.cache = newVerifiedCache(maxCached)
	}
	realm := DefaultRealm
	if cfg.Realm != "" {
		if !filter.Quotable(cfg.Realm) {
			fail("realm", "must be printable ASCII without '\"' or '\\'")
		}
		realm = cfg.Realm
	}
	for r := range numReasons {
		f.challenges[r] = challenge(realm, r)
	}

	type pending struct {
		iss      *issuer
		uri      *url.URL
		file     string
		interval time.Duration
		field    string
	}
	var todo []pending
	var allAlgs []string
	if len(cfg.Issuers) == 0 {
		fail("issuers", "at least one issuer is required")
	}
	for i, ic := range cfg.Issuers {
		field := "issuers[" + strconv.Itoa(i) + "]"
		iss := &issuer{name: ic.Issuer}
		switch {
		case ic.Issuer == "":
			fail(field+".issuer", "required")
		case f.issuers[ic.Issuer] != nil:
			fail(field+".issuer", "%q is listed twice", ic.Issuer)
		default:
			f.issuers[ic.Issuer] = iss
		}
		if len(ic.Audiences) == 0 {
			// Accepting any audience would accept tokens minted for other
			// services (RFC 8725 §3.9).
			fail(field+".audiences", "at least one audience is required")
		}
		for j, a := range ic.Audiences {
			if a == "" {
				fail(field+".audiences["+strconv.Itoa(j)+"]", "must not be empty")
			}
		}
		iss.audiences = ic.Audiences
		if len(ic.Algorithms) == 0 {
			fail(field+".algorithms", "at least one algorithm is required (%s)", strings.Join(supportedAlgs, ", "))
		}
		for j, a := range ic.Algorithms {
			af := field + ".algorithms[" + strconv.Itoa(j) + "]"
			switch {
			case refused(a) != "":
				fail(af, "%q is never accepted: %s", a, refused(a))
			case !slices.Contains(supportedAlgs, a):
				fail(af, "%q is not a supported algorithm (%s)", a, strings.Join(supportedAlgs, ", "))
			case slices.Contains(iss.algs, a):
				fail(af, "%q is listed twice", a)
			default:
				iss.algs = append(iss.algs, a)
				if !slices.Contains(allAlgs, a) {
					allAlgs = append(allAlgs, a)
				}
			}
		}
		p := pending{iss: iss, interval: DefaultRefreshInterval, field: field}
		switch {
		case ic.JWKSURI == "" && ic.JWKSFile == "":
			fail(field, "one of jwksURI and jwksFile is required")
		case ic.JWKSURI != "" && ic.JWKSFile != "":
			fail(field, "jwksURI and jwksFile are exclusive")
		case ic.JWKSURI != "":
			// https, or http to loopback only: a key set fetched in clear text
			// over a network could be replaced by anyone on the path, and with
			// it every key.
			u, err := url.Parse(ic.JWKSURI)
			if err == nil {
				err = filter.CheckHTTPSURL(u)
			}
			if err != nil {
				fail(field+".jwksURI", "%v", err)
			}
			p.uri = u
		default:
			p.file = ic.JWKSFile
		}
		if d := ic.RefreshInterval; d != nil {
			if d.D() < MinRefreshInterval || d.D() > MaxRefreshInterval {
				fail(field+".refreshInterval", "%v is outside %v to %v", d.D(), MinRefreshInterval, MaxRefreshInterval)
			}
			p.interval = d.D()
		}
		for j, m := range ic.ClaimsToHeaders {
			mf := field + ".claimsToHeaders[" + strconv.Itoa(j) + "]"
			if m.Claim == "" {
				fail(mf+".claim", "required")
			}
			h := textproto.CanonicalMIMEHeaderKey(m.Header)
			switch {
			case !httpguts.ValidHeaderFieldName(m.Header):
				fail(mf+".header", "%q is not a valid header name", m.Header)
			case filter.ReservedRequestHeader(h):
				fail(mf+".header", "%s carries credentials, framing or routing and cannot be set from a claim", h)
			case slices.ContainsFunc(iss.headers, func(c claimHeader) bool { return c.header == h }):
				fail(mf+".header", "%s is set twice", h)
			}
			iss.headers = append(iss.headers, claimHeader{claim: m.Claim, header: h})
			if !slices.Contains(f.strip, h) {
				f.strip = append(f.strip, h)
			}
		}
		todo = append(todo, p)
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}

	// Only now, with a config known to be good, read key files and persisted sets.
	for _, p := range todo {
		src, err := newSource(p.iss.name, p.uri, p.file, p.interval, b.DataDir, f.log)
		if err != nil {
			fail(p.field+".jwksFile", "%v", err)
			continue
		}
		p.iss.src = src
	}
	if err := probs.Err(); err != nil {
		f.Close()
		return nil, err
	}
	for _, iss := range f.issuers {
		iss.src.start()
	}
	f.parser = gojwt.NewParser(
		gojwt.WithValidMethods(allAlgs), // a first filter; the key function checks per issuer
		gojwt.WithExpirationRequired(),  // optional in RFC 7519 §4.1.4; a token without one never ends
		gojwt.WithIssuedAt(),            // iat in the future (beyond leeway) is refused
		gojwt.WithLeeway(f.leeway),
		gojwt.WithStrictDecoding(), // RFC 7515 §2: one base64url form per token
	)
	f.keyFunc = f.key
	return f, nil
}
