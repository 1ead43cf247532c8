package cors

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/publicsuffix"

	"github.com/rs/cors"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
)

// Type is the name under which the filter is registered ("type: cors" in a Route rule).
const Type = "cors"

func init() { filter.Register(Type, Factory) }

// Config is the filter's config as written in a Route rule. AllowedOrigins is required.
type Config struct {
	// AllowedOrigins lists the origins allowed to read responses: exact origins
	// ("https://app.example.com", "http://localhost:3000"), patterns whose leftmost
	// DNS label is "*" ("https://*.example.com", which matches exactly one label),
	// "*" alone for any origin (not with AllowCredentials), or "null" written
	// exactly, which is allowed with a warning.
	AllowedOrigins []string `yaml:"allowedOrigins"`
	// AllowedMethods are the methods a cross-origin request may use. Default GET,
	// HEAD and POST.
	AllowedMethods []string `yaml:"allowedMethods,omitempty"`
	// AllowedHeaders are the request headers a cross-origin request may send beyond
	// the CORS-safelisted ones; "*" allows any. Default Accept, Content-Type and
	// X-Requested-With.
	AllowedHeaders []string `yaml:"allowedHeaders,omitempty"`
	// ExposedHeaders are the response headers a page may read beyond the
	// CORS-safelisted ones. Default none.
	ExposedHeaders []string `yaml:"exposedHeaders,omitempty"`
	// AllowCredentials lets cross-origin requests carry cookies and HTTP
	// authentication, and lets the page read the answers to them.
	AllowCredentials bool `yaml:"allowCredentials,omitempty"`
	// MaxAge is how long a browser may cache a preflight answer, in whole seconds.
	// Absent: no Access-Control-Max-Age (browsers use 5s); "0s" sends 0 (no caching).
	MaxAge *config.Duration `yaml:"maxAge,omitempty"`
	// AllowPrivateNetwork answers Private Network Access preflights (a public page
	// calling a private address) with Access-Control-Allow-Private-Network: true.
	AllowPrivateNetwork bool `yaml:"allowPrivateNetwork,omitempty"`
}

// defaultMethods are rs/cors's default, written out so that the README and the
// checks agree with it.
var defaultMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost}

// Factory decodes and checks the config and builds the filter. The rs/cors handler
// is built here, once per snapshot, so that a request pays only for matching.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	var probs filter.Problems
	fail := probs.Add

	opts := cors.Options{
		AllowedMethods:      defaultMethods,
		AllowCredentials:    cfg.AllowCredentials,
		AllowPrivateNetwork: cfg.AllowPrivateNetwork,
		// Preflights end here: the upstream never sees them (the filter relies on it).
		OptionsPassthrough:   false,
		OptionsSuccessStatus: http.StatusNoContent,
	}
	f := &corsFilter{route: b.Route, log: b.Logger}

	anyOrigin := false
	set := &originSet{exact: map[string]struct{}{}}
	if len(cfg.AllowedOrigins) == 0 {
		fail("allowedOrigins", `required: list the origins allowed (rs/cors would otherwise allow every origin)`)
	}
	for i, o := range cfg.AllowedOrigins {
		field := fmt.Sprintf("allowedOrigins[%d]", i)
		switch {
		case o == "*":
			anyOrigin = true
			if cfg.AllowCredentials {
				fail(field, `"*" cannot be combined with allowCredentials: true (browsers refuse it, and allowing every origin with credentials would let any site act as the user); list the origins`)
			}
			if len(cfg.AllowedOrigins) > 1 {
				fail(field, `"*" allows every origin; list it alone or not at all`)
			}
		case o == "null":
			set.exact["null"] = struct{}{}
			if b.Logger != nil {
				b.Logger.Warn(`cors: the "null" origin is allowed; sandboxed iframes, data: and file: pages and cross-origin redirects all send it, so any site can make a request with it`,
					"route", b.Route, "field", field)
			}
		case strings.EqualFold(strings.TrimSpace(o), "null"):
			fail(field, `%q: write the null origin exactly as "null" if you really mean to allow it`, o)
		default:
			norm, pat, msg := parseOrigin(o)
			switch {
			case msg != "":
				fail(field, "%q %s", o, msg)
			case pat != nil:
				set.patterns = append(set.patterns, *pat)
			default:
				set.exact[norm] = struct{}{}
			}
		}
	}
	if anyOrigin {
		opts.AllowedOrigins = []string{"*"}
	} else {
		// rs/cors's own wildcard matches any run of characters, dots included
		// ("https://*.example.com" would accept "https://a.b.example.com" and
		// "https://.example.com"); the filter matches whole labels itself.
		f.origins = set
		opts.AllowOriginFunc = set.allowed
	}

	if len(cfg.AllowedMethods) > 0 {
		opts.AllowedMethods = nil
		for i, m := range cfg.AllowedMethods {
			field := fmt.Sprintf("allowedMethods[%d]", i)
			switch {
			case m == "*":
				fail(field, `"*" is not supported for methods; list them (GET, POST, PUT, ...)`)
			case !httpguts.ValidHeaderFieldName(m):
				fail(field, "%q is not a method name", m)
			case strings.ToUpper(m) != m:
				// Methods are case-sensitive and browsers send the usual ones in upper
				// case, so a lower-case entry would silently never match.
				fail(field, "%q: methods are case-sensitive and browsers send them in upper case; write %q", m, strings.ToUpper(m))
			default:
				opts.AllowedMethods = append(opts.AllowedMethods, m)
			}
		}
	}
	for i, h := range cfg.AllowedHeaders {
		if h != "*" && !httpguts.ValidHeaderFieldName(h) {
			fail(fmt.Sprintf("allowedHeaders[%d]", i), "%q is not a header name", h)
		}
	}
	opts.AllowedHeaders = cfg.AllowedHeaders
	for i, h := range cfg.ExposedHeaders {
		field := fmt.Sprintf("exposedHeaders[%d]", i)
		switch {
		case h == "*" && cfg.AllowCredentials:
			fail(field, `"*" means every header only without credentials (browsers read it as a header named "*" when allowCredentials is true); list the names`)
		case h != "*" && !httpguts.ValidHeaderFieldName(h):
			fail(field, "%q is not a header name", h)
		}
	}
	opts.ExposedHeaders = cfg.ExposedHeaders
	if cfg.MaxAge != nil {
		d := cfg.MaxAge.D()
		switch {
		case d%time.Second != 0:
			fail("maxAge", "%v is not a whole number of seconds (the header carries seconds)", d)
		case d == 0:
			opts.MaxAge = -1 // rs/cors's way of sending "0"
		default:
			opts.MaxAge = int(d / time.Second)
		}
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	f.c = cors.New(opts)
	return f, nil
}

// parseOrigin checks that s is scheme://host[:port] and returns it in lower case, or
// the pattern it is when its leftmost label is "*". msg, if not empty, says what is
// wrong (after the quoted value).
func parseOrigin(s string) (norm string, pat *pattern, msg string) {
	const want = "is not an origin: want scheme://host[:port], as in https://app.example.com"
	// Scheme and host are case-insensitive and browsers send them in lower case.
	s = strings.ToLower(s)
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || !validScheme(scheme) {
		return "", nil, want
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		return "", nil, "has a path, query or fragment (a trailing slash counts); an origin is scheme://host[:port] only"
	}
	if strings.ContainsAny(rest, "@ \t") {
		return "", nil, want
	}
	host, port, hasPort := rest, "", false
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", nil, want
		}
		host, port = rest[:end+1], rest[end+1:]
		if port != "" {
			if port[0] != ':' {
				return "", nil, want
			}
			port, hasPort = port[1:], true
		}
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", nil, "has a bracketed host that is not an IPv6 address"
		}
		// Browsers serialise IPv6 hosts in the compressed form; match that.
		host = "[" + a.String() + "]"
	} else {
		if strings.Count(rest, ":") > 1 {
			return "", nil, want + " (an IPv6 host goes in brackets)"
		}
		if i := strings.IndexByte(rest, ':'); i >= 0 {
			host, port, hasPort = rest[:i], rest[i+1:], true
		}
	}
	if host == "" {
		return "", nil, want
	}
	if hasPort {
		n, err := strconv.Atoi(port)
		switch {
		case err != nil || n < 1 || n > 65535 || port[0] < '1' || port[0] > '9':
			return "", nil, fmt.Sprintf("has port %q, not a number from 1 to 65535", port)
		case scheme == "http" && n == 80, scheme == "https" && n == 443:
			return "", nil, fmt.Sprintf("names the default port %d of %s; browsers leave it out of the Origin, so write %s://%s", n, scheme, scheme, host)
		}
		port = ":" + port
	}
	if strings.Contains(host, "*") {
		p, msg := parsePattern(scheme, host, port)
		return "", p, msg
	}
	if !strings.HasPrefix(host, "[") {
		if _, err := netip.ParseAddr(host); err != nil && !validDNSName(host) {
			return "", nil, "has a host that is neither a DNS name nor an IP address"
		}
	}
	return scheme + "://" + host + port, nil, ""
}

// parsePattern checks a host with a wildcard: "*" must be its whole leftmost label,
// and what follows must be a DNS name of at least two labels, so that a pattern can
// never cover a whole top-level domain.
func parsePattern(scheme, host, port string) (*pattern, string) {
	const whole = "has a wildcard that is not a whole DNS label; write it as the leftmost label, as in https://*.example.com"
	first, rest, _ := strings.Cut(host, ".")
	switch {
	case strings.HasPrefix(host, "["):
		return nil, "has a wildcard in an IP address"
	case first != "*":
		return nil, whole
	case strings.Contains(rest, "*"):
		return nil, "has more than one wildcard, or one that is not the leftmost label"
	case !validDNSName(rest):
		return nil, "has a wildcard over something that is not a DNS name"
	case !strings.Contains(rest, "."):
		return nil, fmt.Sprintf("has a wildcard over the top-level domain %q, which would allow anyone's site", rest)
	case isPublicSuffix(rest):
		return nil, fmt.Sprintf("has a wildcard over the public suffix %q (anyone can register a name under it), which would allow anyone's site", rest)
	}
	return &pattern{prefix: scheme + "://", suffix: "." + rest + port}, ""
}

// isPublicSuffix reports whether name is itself a public suffix ("co.uk",
// "github.io"), by the Public Suffix List compiled into golang.org/x/net, so that
// "https://*.co.uk" is refused like "https://*.com".
func isPublicSuffix(name string) bool {
	suffix, _ := publicsuffix.PublicSuffix(name)
	return suffix == name
}

// validScheme reports whether s is an RFC 3986 scheme (already in lower case).
func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validDNSName reports whether s is a lower-case host name: labels of letters,
// digits, '-' and '_' (which browsers accept in hosts), 1 to 63 bytes, not starting
// or ending with '-', and a last label that is not all digits (that is an IPv4
// address written oddly).
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if !validLabel(l) {
			return false
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// validLabel reports whether l is one lower-case DNS label (see validDNSName).
func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
