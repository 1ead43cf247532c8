package oidc

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/net/http/httpguts"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
)

// Type is the name under which the filter is registered ("type: oidc" in a Route rule).
const Type = "oidc"

func init() { filter.Register(Type, Factory) }

// Defaults and bounds of the config.
const (
	DefaultRedirectPath       = "/oauth2/callback"
	DefaultLoginPath          = "/oauth2/login"
	DefaultLogoutPath         = "/oauth2/logout"
	DefaultPostLogoutRedirect = "/"
	DefaultCookieName         = "__Host-portcullis-session"
	DefaultMaxAge             = 8 * time.Hour
	MinMaxAge                 = 5 * time.Minute
	MaxMaxAge                 = 30 * 24 * time.Hour
	DefaultRefreshBefore      = time.Minute
	MaxRefreshBefore          = time.Hour
	// MinSecretBytes is the least a cookie secret may hold: the keys derived from it
	// are 256-bit, and a shorter secret would be the weaker link.
	MinSecretBytes = 32
	// maxFileBytes bounds what is read of a secret file: secrets are short, and a
	// path pointing at a large file by mistake should fail, not be read whole.
	maxFileBytes  = 4 << 10
	maxCookieName = 64
)

// DefaultScopes are requested when the config names none.
var DefaultScopes = []string{"openid", "profile", "email"}

// Modes of the filter.
const (
	ModeBrowser    = "browser"
	ModeBearerOnly = "bearerOnly"
)

// Config is the filter's config as written in a Route rule.
type Config struct {
	// Issuer is the OpenID Provider's issuer URL, exactly as its discovery document
	// and its ID tokens write it. https, or http to a loopback IP literal. Required.
	Issuer string `yaml:"issuer"`
	// ClientID is this gateway's client at the provider; ID tokens must name it in
	// aud. Required.
	ClientID string `yaml:"clientID"`
	// ClientSecretFile holds the client secret (surrounding white space is ignored).
	// Required: the secret is never written inline in config.
	ClientSecretFile string `yaml:"clientSecretFile"`
	// Mode is "browser" (default: unauthenticated page loads are sent to the
	// provider's login) or "bearerOnly" (never redirect: API routes get 401).
	Mode string `yaml:"mode,omitempty"`
	// Scopes requested at login; must include openid. Default openid, profile, email.
	Scopes []string `yaml:"scopes,omitempty"`
	// RedirectPath is the callback the provider sends the browser back to.
	RedirectPath string `yaml:"redirectPath,omitempty"`
	// LoginPath starts a login explicitly, returning to its rd parameter.
	LoginPath string `yaml:"loginPath,omitempty"`
	// LogoutPath ends the session.
	LogoutPath string `yaml:"logoutPath,omitempty"`
	// PostLogoutRedirect is where the browser goes after logout: a path on the same
	// host or an absolute https URL. Default "/".
	PostLogoutRedirect string `yaml:"postLogoutRedirect,omitempty"`
	// AllowedRedirectHosts are the hosts, besides the request's own, that a login's
	// rd parameter may return to ("app.example.com", "*.example.com").
	AllowedRedirectHosts []string `yaml:"allowedRedirectHosts,omitempty"`
	// RefreshBefore refreshes the tokens this long before they expire. Default 1m.
	RefreshBefore *config.Duration `yaml:"refreshBefore,omitempty"`
	// Cookie is the session cookie; its secretFile is required.
	Cookie CookieConfig `yaml:"cookie"`
	// ClaimsToHeaders passes ID-token claims to the upstream as headers.
	ClaimsToHeaders []ClaimToHeader `yaml:"claimsToHeaders,omitempty"`
}

// CookieConfig is the session cookie.
type CookieConfig struct {
	// Name of the cookie (and the prefix of its chunks and of the flow cookies).
	// Default "__Host-portcullis-session".
	Name string `yaml:"name,omitempty"`
	// SecretFile holds at least 32 random bytes, from which the encryption keys of
	// the session and flow cookies are derived. Required.
	SecretFile string `yaml:"secretFile"`
	// MaxAge is the longest a session lasts after login, refreshes included.
	// Default 8h, 5m to 720h.
	MaxAge *config.Duration `yaml:"maxAge,omitempty"`
	// SameSite is Lax (default), Strict or None.
	SameSite string `yaml:"sameSite,omitempty"`
}

// ClaimToHeader maps one top-level ID-token claim to a request header.
type ClaimToHeader struct {
	Claim  string `yaml:"claim"`
	Header string `yaml:"header"`
}

// Factory decodes and checks the config, reads the two secret files and builds the
// filter. It does not touch the network: provider discovery starts with the first
// request that needs it, so that a proxy starts while the provider is down.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	f := &oidcFilter{
		route:         b.Route,
		events:        b.Events,
		log:           b.LoggerFor(Type),
		issuer:        cfg.Issuer,
		clientID:      cfg.ClientID,
		bearerOnly:    cfg.Mode == ModeBearerOnly,
		scopes:        DefaultScopes,
		redirectPath:  DefaultRedirectPath,
		loginPath:     DefaultLoginPath,
		logoutPath:    DefaultLogoutPath,
		postLogout:    DefaultPostLogoutRedirect,
		refreshBefore: DefaultRefreshBefore,
		maxAge:        DefaultMaxAge,
		sameSite:      http.SameSiteLaxMode,
		cookieName:    DefaultCookieName,
		now:           time.Now,
	}
	var probs filter.Problems
	fail := probs.Add

	issuerURL, err := url.Parse(cfg.Issuer)
	switch {
	case cfg.Issuer == "":
		fail("issuer", "required")
	case err != nil:
		fail("issuer", "%v", err)
	case issuerURL.RawQuery != "" || issuerURL.Fragment != "":
		fail("issuer", "must not have a query or fragment (OpenID Connect Discovery §2)")
	default:
		// https, or http to loopback only: over a network, plain http would
		// hand the client secret, the codes and the tokens to anyone on the path.
		if err := filter.CheckHTTPSURL(issuerURL); err != nil {
			fail("issuer", "%v", err)
		}
	}
	if cfg.ClientID == "" {
		fail("clientID", "required")
	}

	switch cfg.Mode {
	case "", ModeBrowser, ModeBearerOnly:
	default:
		fail("mode", "%q is not %s or %s", cfg.Mode, ModeBrowser, ModeBearerOnly)
	}
	if f.bearerOnly {
		// A bearerOnly filter never starts or ends a login; these would suggest it does.
		for _, fs := range []struct {
			field string
			set   bool
		}{
			{"redirectPath", cfg.RedirectPath != ""}, {"loginPath", cfg.LoginPath != ""},
			{"logoutPath", cfg.LogoutPath != ""}, {"postLogoutRedirect", cfg.PostLogoutRedirect != ""},
			{"allowedRedirectHosts", len(cfg.AllowedRedirectHosts) > 0},
		} {
			if fs.set {
				fail(fs.field, "only meaningful with mode: %s (a %s route never starts or ends a login)", ModeBrowser, ModeBearerOnly)
			}
		}
	}

	if cfg.Scopes != nil {
		f.scopes = nil
		for i, s := range cfg.Scopes {
			field := "scopes[" + strconv.Itoa(i) + "]"
			switch {
			case !validScope(s):
				fail(field, "%q is not a scope token (RFC 6749 §3.3: printable ASCII without space, '\"' or '\\')", s)
			case slices.Contains(f.scopes, s):
				fail(field, "%q is listed twice", s)
			default:
				f.scopes = append(f.scopes, s)
			}
		}
		if !slices.Contains(cfg.Scopes, "openid") {
			fail("scopes", "must include openid: without it the provider returns no ID token")
		}
	}

	paths := map[string]string{} // path -> field, to find two uses of one path
	checkPath := func(field, p string, dst *string) {
		if p == "" {
			p = *dst
		} else if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || path.Clean(p) != p || strings.ContainsAny(p, "?#\\%") {
			fail(field, "%q is not a clean absolute path (\"/oauth2/callback\")", p)
			return
		}
		if other, dup := paths[p]; dup {
			fail(field, "%q is also %s", p, other)
			return
		}
		paths[p] = field
		*dst = p
	}
	checkPath("redirectPath", cfg.RedirectPath, &f.redirectPath)
	checkPath("loginPath", cfg.LoginPath, &f.loginPath)
	checkPath("logoutPath", cfg.LogoutPath, &f.logoutPath)

	if p := cfg.PostLogoutRedirect; p != "" {
		if err := checkPostLogout(p); err != nil {
			fail("postLogoutRedirect", "%v", err)
		}
		f.postLogout = p
	}
	for i, h := range cfg.AllowedRedirectHosts {
		field := "allowedRedirectHosts[" + strconv.Itoa(i) + "]"
		h = strings.ToLower(h)
		if !validHostPattern(h) {
			fail(field, "%q is not a host name or *.domain (no scheme, port or path)", cfg.AllowedRedirectHosts[i])
			continue
		}
		f.redirectHosts = append(f.redirectHosts, h)
	}

	if d := cfg.RefreshBefore; d != nil {
		if d.D() > MaxRefreshBefore {
			fail("refreshBefore", "%v is more than %v", d.D(), MaxRefreshBefore)
		}
		f.refreshBefore = d.D()
	}

	c := cfg.Cookie
	if c.Name != "" {
		if len(c.Name) > maxCookieName || !validCookieName(c.Name) {
			fail("cookie.name", "%q is not a cookie name (letters, digits and !#$&'*+-.^_`|~, at most %d)", c.Name, maxCookieName)
		}
		f.cookieName = c.Name
	}
	if d := c.MaxAge; d != nil {
		if d.D() < MinMaxAge || d.D() > MaxMaxAge {
			fail("cookie.maxAge", "%v is outside %v to %v", d.D(), MinMaxAge, MaxMaxAge)
		}
		f.maxAge = d.D()
	}
	switch strings.ToLower(c.SameSite) {
	case "", "lax":
	case "strict":
		f.sameSite = http.SameSiteStrictMode
	case "none":
		f.sameSite = http.SameSiteNoneMode
	default:
		fail("cookie.sameSite", "%q is not Lax, Strict or None", c.SameSite)
	}

	for i, m := range cfg.ClaimsToHeaders {
		field := "claimsToHeaders[" + strconv.Itoa(i) + "]"
		if m.Claim == "" {
			fail(field+".claim", "required")
		}
		h := textproto.CanonicalMIMEHeaderKey(m.Header)
		switch {
		case !httpguts.ValidHeaderFieldName(m.Header):
			fail(field+".header", "%q is not a valid header name", m.Header)
			continue
		case filter.ReservedRequestHeader(h):
			fail(field+".header", "%s carries credentials, framing or routing and cannot be set from a claim", h)
			continue
		case slices.ContainsFunc(f.headers, func(c claimHeader) bool { return c.header == h }):
			fail(field+".header", "%s is set twice", h)
			continue
		}
		f.headers = append(f.headers, claimHeader{claim: m.Claim, header: h})
	}

	// The files last, so that their errors come after the shape's; their contents
	// never appear in an error.
	if cfg.ClientSecretFile == "" {
		fail("clientSecretFile", "required (the client secret is never written inline)")
	} else if s, err := readSecret(cfg.ClientSecretFile); err != nil {
		fail("clientSecretFile", "%v", err)
	} else if s = bytes.TrimSpace(s); len(s) == 0 {
		fail("clientSecretFile", "%s is empty", cfg.ClientSecretFile)
	} else {
		f.clientSecret = string(s)
	}
	var cookieSecret []byte
	if c.SecretFile == "" {
		fail("cookie.secretFile", "required: at least %d random bytes that encrypt the session cookies", MinSecretBytes)
	} else if s, err := readSecret(c.SecretFile); err != nil {
		fail("cookie.secretFile", "%v", err)
	} else if s = bytes.TrimRight(s, "\r\n"); len(s) < MinSecretBytes {
		fail("cookie.secretFile", "%s holds %d bytes, fewer than the %d required", c.SecretFile, len(s), MinSecretBytes)
	} else {
		cookieSecret = s
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}

	// Bind both cookies to this provider and client: a session minted for another
	// route's provider, sharing the secret file, must not open here.
	binding := cfg.Issuer + "\x00" + cfg.ClientID + "\x00" + f.cookieName
	if f.sessions, err = newSealer(cookieSecret, "session", binding); err == nil {
		f.flows, err = newSealer(cookieSecret, "flow", binding)
	}
	if err != nil {
		return nil, fmt.Errorf("cookie.secretFile: %w", err)
	}
	f.challenge = `Cookie realm="portcullis", cookie-name="` + f.cookieName + `"`
	f.client = newClient()
	// The verifier checks iss (the discovered issuer, equal to the configured one),
	// aud = clientID, exp against the filter's clock, and the signature with an
	// algorithm the provider announced (never "none" or HMAC).
	verify := &gooidc.Config{ClientID: cfg.ClientID, Now: func() time.Time { return f.now() }}
	f.disc = newDiscovery(cfg.Issuer, verify, f.client, f.log)
	return f, nil
}

// readSecret reads a secret file, refusing large files. Errors name the file and
// never its contents.
func readSecret(name string) ([]byte, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes; is it the right file?", name, maxFileBytes)
	}
	return b, nil
}

// checkPostLogout allows a path on the request's host or an absolute https URL.
func checkPostLogout(p string) error {
	if strings.HasPrefix(p, "/") {
		if !safeRelative(p) {
			return fmt.Errorf("%q is not a path on this host", p)
		}
		return nil
	}
	u, err := url.Parse(p)
	if err != nil {
		return err
	}
	return filter.CheckHTTPSURL(u)
}

// validScope: RFC 6749 §3.3 scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// validCookieName: an RFC 6265 §4.1.1 cookie-name is an RFC 2616 token.
func validCookieName(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool { return !httpguts.IsTokenRune(r) }) < 0
}

// validHostPattern accepts a lower-case DNS name, optionally "*." and a name of at
// least two labels.
func validHostPattern(h string) bool {
	name, wild := strings.CutPrefix(h, "*.")
	if wild && !strings.Contains(name, ".") {
		return false // "*.com" would allow a whole top-level domain
	}
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
