package credexchange

import (
	"crypto/x509"
	"encoding/base64"
	"log/slog"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	cx "github.com/portcullis/portcullis/credexchange"
	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
)

// Type is the name under which the filter is registered ("type: credexchange").
const Type = "credexchange"

func init() { filter.Register(Type, Factory) }

// Config is the filter's config as written in a Route rule.
type Config struct {
	// Credentials are tried in order; the first whose match fits the request
	// says what to inject.
	Credentials []Rule `yaml:"credentials"`
	// RequireMatch refuses (403) a request no rule matches, instead of passing
	// it on without credentials.
	RequireMatch bool `yaml:"requireMatch,omitempty"`
}

// Rule is one entry of credentials.
type Rule struct {
	Match  Match  `yaml:"match"`
	Inject Inject `yaml:"inject"`
}

// Match selects requests by caller and destination.
type Match struct {
	// Callers are caller identities: exact ("spiffe://corp/ns/shop/sa/orders"),
	// a prefix ending in "/*" ("spiffe://corp/ns/shop/*"), or "*" for any
	// identified caller. Required.
	Callers []string `yaml:"callers"`
	// Hosts are destination hosts: exact ("api.stripe.example") or a suffix
	// ("*.example.com"). None: any host.
	Hosts []string `yaml:"hosts,omitempty"`
}

// Inject names exactly one kind of credential.
type Inject struct {
	APIKey                  *APIKey        `yaml:"apiKey,omitempty"`
	Bearer                  *Bearer        `yaml:"bearer,omitempty"`
	Basic                   *Basic         `yaml:"basic,omitempty"`
	OAuth2ClientCredentials *OAuth2        `yaml:"oauth2ClientCredentials,omitempty"`
	TokenExchange           *TokenExchange `yaml:"tokenExchange,omitempty"`
}

// APIKey sends a key from a file in a header or a query parameter.
type APIKey struct {
	Header    string `yaml:"header,omitempty"`
	Query     string `yaml:"query,omitempty"`
	ValueFile string `yaml:"valueFile"`
}

// Bearer sends "Authorization: Bearer <token>" with a token from a file.
type Bearer struct {
	TokenFile string `yaml:"tokenFile"`
}

// Basic sends HTTP Basic credentials (RFC 7617) from two files.
type Basic struct {
	UsernameFile string `yaml:"usernameFile"`
	PasswordFile string `yaml:"passwordFile"`
}

// OAuth2 fetches tokens with the client-credentials grant.
type OAuth2 struct {
	TokenURL         string   `yaml:"tokenURL"`
	ClientIDFile     string   `yaml:"clientIDFile"`
	ClientSecretFile string   `yaml:"clientSecretFile"`
	Scopes           []string `yaml:"scopes,omitempty"`
	Audience         string   `yaml:"audience,omitempty"`
	Resource         string   `yaml:"resource,omitempty"`
	// ClientAuth is "basic" (default: HTTP Basic) or "body" (form parameters).
	ClientAuth string `yaml:"clientAuth,omitempty"`
	// CAFile verifies the endpoint's certificate instead of the system roots.
	CAFile        string           `yaml:"caFile,omitempty"`
	Timeout       *config.Duration `yaml:"timeout,omitempty"`
	RefreshBefore *config.Duration `yaml:"refreshBefore,omitempty"`
}

// TokenExchange trades the caller's token for an external one (RFC 8693).
type TokenExchange struct {
	TokenURL         string           `yaml:"tokenURL"`
	ClientIDFile     string           `yaml:"clientIDFile"`
	ClientSecretFile string           `yaml:"clientSecretFile"`
	Scopes           []string         `yaml:"scopes,omitempty"`
	Audience         string           `yaml:"audience,omitempty"`
	Resource         string           `yaml:"resource,omitempty"`
	ClientAuth       string           `yaml:"clientAuth,omitempty"`
	CAFile           string           `yaml:"caFile,omitempty"`
	Timeout          *config.Duration `yaml:"timeout,omitempty"`
	RefreshBefore    *config.Duration `yaml:"refreshBefore,omitempty"`
	// SubjectTokenFrom says where the token to exchange comes from; only
	// "callerToken" (the bearer token of the caller's Authorization header).
	SubjectTokenFrom string `yaml:"subjectTokenFrom"`
	// SubjectTokenType is an RFC 8693 token type URI. Default access_token.
	SubjectTokenType   string `yaml:"subjectTokenType,omitempty"`
	RequestedTokenType string `yaml:"requestedTokenType,omitempty"`
	CacheSize          *int   `yaml:"cacheSize,omitempty"`
}

// Bounds of the config.
const (
	MaxTimeout   = time.Minute
	MaxRules     = 1000
	MaxCacheSize = 1_000_000
)

// builder gathers the problems of one config and the sources it opened, so that
// a refused config closes what it opened.
type builder struct {
	probs   filter.Problems
	log     *slog.Logger
	closers []func() error
	now     func() time.Time
}

func (b *builder) fail(field, format string, args ...any) { b.probs.Add(field, format, args...) }

// Factory decodes and checks the config, reads every secret file and builds the
// filter. Token endpoints are not called until a request needs a token.
func Factory(fb filter.Build) (filter.Filter, error) {
	return build(fb, time.Now)
}

func build(fb filter.Build, now func() time.Time) (filter.Filter, error) {
	var cfg Config
	if err := fb.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	b := &builder{log: fb.LoggerFor(Type), now: now}
	f := &injector{route: fb.Route, requireMatch: cfg.RequireMatch, events: fb.Events, log: b.log}
	if len(cfg.Credentials) == 0 {
		b.fail("credentials", "required: at least one rule")
	} else if len(cfg.Credentials) > MaxRules {
		b.fail("credentials", "%d rules, more than %d", len(cfg.Credentials), MaxRules)
	}
	stripHeaders := map[string]bool{"Authorization": true, "Proxy-Authorization": true}
	stripQuery := map[string]bool{}
	for i, rc := range cfg.Credentials {
		field := "credentials[" + strconv.Itoa(i) + "]"
		r := &rule{index: i}
		b.match(field+".match", rc.Match, r)
		r.source = b.inject(field+".inject", rc.Inject)
		if r.source != nil {
			if h := r.source.header(); h != "" {
				stripHeaders[h] = true
			}
			if q := r.source.query(); q != "" {
				stripQuery[q] = true
			}
		}
		f.rules = append(f.rules, r)
	}
	if err := b.probs.Err(); err != nil {
		for _, c := range b.closers {
			_ = c()
		}
		return nil, err
	}
	for h := range stripHeaders {
		f.stripHeaders = append(f.stripHeaders, h)
	}
	for q := range stripQuery {
		f.stripQuery = append(f.stripQuery, q)
	}
	f.closers = b.closers
	return f, nil
}

func (b *builder) match(field string, m Match, r *rule) {
	if len(m.Callers) == 0 {
		b.fail(field+".callers", `required: caller identities, "spiffe://.../*" prefixes, or "*"`)
	}
	for i, c := range m.Callers {
		fld := field + ".callers[" + strconv.Itoa(i) + "]"
		switch prefix, isPrefix := strings.CutSuffix(c, "/*"); {
		case c == "*":
			r.anyCaller = true
		case c == "" || strings.ContainsAny(c, " \t\r\n"):
			b.fail(fld, "must be a non-empty identity without spaces")
		case isPrefix && !strings.Contains(prefix, "*"):
			r.callerPrefixes = append(r.callerPrefixes, prefix+"/")
		case strings.Contains(c, "*"):
			b.fail(fld, `%q: "*" may only stand alone or end a prefix as "/*"`, c)
		default:
			r.callers = append(r.callers, c)
		}
	}
	for i, h := range m.Hosts {
		fld := field + ".hosts[" + strconv.Itoa(i) + "]"
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		suffix, wild := strings.CutPrefix(h, "*.")
		switch {
		case suffix == "" || strings.ContainsAny(suffix, "*:/ "):
			b.fail(fld, "%q is not a host name or a \"*.\" suffix (no port, no scheme)", m.Hosts[i])
		case wild:
			r.hostSuffixes = append(r.hostSuffixes, "."+suffix)
		default:
			r.hosts = append(r.hosts, h)
		}
	}
}

// inject builds the rule's credential source; nil after a problem.
func (b *builder) inject(field string, in Inject) source {
	var kinds []string
	for name, set := range map[string]bool{"apiKey": in.APIKey != nil, "bearer": in.Bearer != nil, "basic": in.Basic != nil,
		"oauth2ClientCredentials": in.OAuth2ClientCredentials != nil, "tokenExchange": in.TokenExchange != nil} {
		if set {
			kinds = append(kinds, name)
		}
	}
	if len(kinds) != 1 {
		b.fail(field, "name exactly one of apiKey, bearer, basic, oauth2ClientCredentials, tokenExchange (have %d)", len(kinds))
		return nil
	}
	switch {
	case in.APIKey != nil:
		return b.apiKey(field+".apiKey", in.APIKey)
	case in.Bearer != nil:
		tok, ok := b.secret(field+".bearer.tokenFile", in.Bearer.TokenFile)
		if !ok {
			return nil
		}
		return staticSource{hdr: "Authorization", value: "Bearer " + tok.Reveal()}
	case in.Basic != nil:
		user, ok1 := b.secret(field+".basic.usernameFile", in.Basic.UsernameFile)
		pass, ok2 := b.secret(field+".basic.passwordFile", in.Basic.PasswordFile)
		if !ok1 || !ok2 {
			return nil
		}
		if strings.Contains(user.Reveal(), ":") {
			// RFC 7617 §2: the user-id cannot contain a colon.
			b.fail(field+".basic.usernameFile", "the user name contains ':', which RFC 7617 forbids")
			return nil
		}
		pair := base64.StdEncoding.EncodeToString([]byte(user.Reveal() + ":" + pass.Reveal()))
		return staticSource{hdr: "Authorization", value: "Basic " + pair}
	case in.OAuth2ClientCredentials != nil:
		c := in.OAuth2ClientCredentials
		o, ok := b.oauth2(field+".oauth2ClientCredentials", endpointOf(c))
		if !ok {
			return nil
		}
		src, err := cx.NewClientCredentials(o)
		if err != nil {
			b.fail(field+".oauth2ClientCredentials", "%v", err)
			return nil
		}
		b.closers = append(b.closers, src.Close)
		return clientCredentialsSource{src: src}
	default:
		return b.tokenExchange(field+".tokenExchange", in.TokenExchange)
	}
}

func (b *builder) apiKey(field string, k *APIKey) source {
	var s staticSource
	switch {
	case (k.Header == "") == (k.Query == ""):
		b.fail(field, "name exactly one of header and query")
	case k.Header != "":
		h := textproto.CanonicalMIMEHeaderKey(k.Header)
		if !httpguts.ValidHeaderFieldName(k.Header) {
			b.fail(field+".header", "%q is not a valid header name", k.Header)
		} else if h != "Authorization" && filter.ReservedRequestHeader(h) {
			b.fail(field+".header", "%s frames, routes or carries other data and cannot carry a key", h)
		}
		s.hdr = h
	default:
		if k.Query != url.QueryEscape(k.Query) {
			b.fail(field+".query", "%q needs escaping; use a plain parameter name", k.Query)
		}
		s.param = k.Query
	}
	v, ok := b.secret(field+".valueFile", k.ValueFile)
	if !ok {
		return nil
	}
	s.value = v.Reveal()
	return s
}

// secret reads a secret file, warning when others may read it.
func (b *builder) secret(field, path string) (cx.Secret, bool) {
	if path == "" {
		b.fail(field, "required: a file holding the secret")
		return cx.Secret{}, false
	}
	sf, err := cx.ReadSecretFile(path)
	if err != nil {
		b.fail(field, "%v", err)
		return cx.Secret{}, false
	}
	if sf.Exposed {
		b.log.Warn("credexchange: a secret file can be read by group or others; make it 0600 or 0400",
			"field", field, "file", path)
	}
	return sf.Secret, true
}

// endpoint is what both OAuth 2.0 kinds share.
type endpoint struct {
	tokenURL, clientIDFile, clientSecretFile string
	scopes                                   []string
	audience, resource, clientAuth, caFile   string
	timeout, refreshBefore                   *config.Duration
}

func endpointOf(c *OAuth2) endpoint {
	return endpoint{c.TokenURL, c.ClientIDFile, c.ClientSecretFile, c.Scopes, c.Audience, c.Resource,
		c.ClientAuth, c.CAFile, c.Timeout, c.RefreshBefore}
}

func (b *builder) oauth2(field string, e endpoint) (cx.OAuth2, bool) {
	n := len(b.probs)
	o := cx.OAuth2{TokenURL: e.tokenURL, Scopes: e.scopes, Audience: e.audience, Resource: e.resource,
		Logger: b.log, Now: b.now}
	if e.tokenURL == "" {
		b.fail(field+".tokenURL", "required: the token endpoint (https)")
	} else if err := cx.CheckTokenURL(e.tokenURL); err != nil {
		b.fail(field+".tokenURL", "%v", err)
	}
	o.ClientID, _ = b.secret(field+".clientIDFile", e.clientIDFile)
	o.ClientSecret, _ = b.secret(field+".clientSecretFile", e.clientSecretFile)
	for i, s := range e.scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") || !printable(s) {
			b.fail(field+".scopes["+strconv.Itoa(i)+"]", "%q is not an RFC 6749 scope token", s)
		}
	}
	switch e.clientAuth {
	case "", "basic":
	case "body":
		o.ClientAuthInBody = true
	default:
		b.fail(field+".clientAuth", "%q: want basic or body", e.clientAuth)
	}
	if d := e.timeout; d != nil {
		if d.D() <= 0 || d.D() > MaxTimeout {
			b.fail(field+".timeout", "%v is outside (0, %v]", d.D(), MaxTimeout)
		}
		o.Timeout = d.D()
	}
	if d := e.refreshBefore; d != nil {
		if d.D() <= 0 || d.D() > time.Hour {
			b.fail(field+".refreshBefore", "%v is outside (0, 1h]", d.D())
		}
		o.RefreshBefore = d.D()
	}
	var roots *x509.CertPool
	if e.caFile != "" {
		var err error
		if roots, err = cx.LoadRoots(e.caFile); err != nil {
			b.fail(field+".caFile", "%v", err)
		}
	}
	if len(b.probs) > n {
		return o, false
	}
	o.HTTPClient = cx.NewHTTPClient(roots, o.Timeout)
	return o, true
}

func (b *builder) tokenExchange(field string, x *TokenExchange) source {
	n := len(b.probs)
	switch x.SubjectTokenFrom {
	case "callerToken":
	case "":
		b.fail(field+".subjectTokenFrom", "required: callerToken")
	default:
		b.fail(field+".subjectTokenFrom", "%q: only callerToken", x.SubjectTokenFrom)
	}
	for name, v := range map[string]string{"subjectTokenType": x.SubjectTokenType, "requestedTokenType": x.RequestedTokenType} {
		if v != "" && !strings.HasPrefix(v, "urn:") {
			b.fail(field+"."+name, "%q is not a token type URI (urn:ietf:params:oauth:token-type:...)", v)
		}
	}
	opts := cx.ExchangeOptions{SubjectTokenType: x.SubjectTokenType, RequestedTokenType: x.RequestedTokenType}
	if p := x.CacheSize; p != nil {
		if *p < 1 || *p > MaxCacheSize {
			b.fail(field+".cacheSize", "%d is outside 1 to %d", *p, MaxCacheSize)
		}
		opts.CacheSize = *p
	}
	o, ok := b.oauth2(field, endpoint{x.TokenURL, x.ClientIDFile, x.ClientSecretFile, x.Scopes, x.Audience,
		x.Resource, x.ClientAuth, x.CAFile, x.Timeout, x.RefreshBefore})
	if !ok || len(b.probs) > n {
		return nil
	}
	src, err := cx.NewTokenExchange(o, opts)
	if err != nil {
		b.fail(field, "%v", err)
		return nil
	}
	b.closers = append(b.closers, src.Close)
	return exchangeSource{src: src}
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}
