package observe

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// masked replaces a secret value in logs.
const masked = "***"

// secretWords are looked for in header and query parameter names, lower-cased and
// with '-', '_', '.' and ' ' removed, so "X-API-Key", "api_key" and "apikey" are one.
// A false positive costs a debugging detail; a false negative leaks a credential
// into every log store downstream, so the list leans wide.
var secretWords = [...]string{
	"apikey", "token", "secret", "password", "passwd",
	"authorization", "credential", "signature", "session",
}

// masker decides which header and query parameter values are written as "***".
// It is immutable: Configure builds a new one.
type masker struct {
	extra map[string]struct{} // TelemetrySpec.MaskHeaders, normalised as secretWords
}

func newMasker(names []string) *masker {
	m := &masker{extra: make(map[string]struct{}, len(names))}
	for _, n := range names {
		if k := normName(n); k != "" {
			m.extra[k] = struct{}{}
		}
	}
	return m
}

// normName lower-cases a name and drops the separators people vary.
func normName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-' || c == '_' || c == '.' || c == ' ':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// secretName reports whether values under this header or parameter name are
// secrets.
func (m *masker) secretName(name string) bool {
	n := normName(name)
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	_, ok := m.extra[n]
	return ok
}

// header returns the value of a request or response header as it may be logged.
func (m *masker) header(name, value string) string {
	switch {
	case strings.EqualFold(name, "Authorization"), strings.EqualFold(name, "Proxy-Authorization"):
		return maskAuthorization(value)
	case strings.EqualFold(name, "Cookie"):
		return maskCookie(value)
	case strings.EqualFold(name, "Set-Cookie"):
		return maskSetCookie(value)
	case m.secretName(name):
		return masked
	case strings.EqualFold(name, "Referer"):
		return m.url(value)
	}
	return value
}

// headers returns the headers as a flat name -> value map for the log, each value
// masked; repeated fields are joined as RFC 9110 §5.3 allows.
func (m *masker) headers(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for name, vs := range h {
		sep := ", "
		if strings.EqualFold(name, "Cookie") {
			sep = "; " // RFC 6265 §5.4: cookie-pairs are joined by "; "
		}
		mv := make([]string, len(vs))
		for i, v := range vs {
			mv[i] = m.header(name, v)
		}
		out[name] = strings.Join(mv, sep)
	}
	return out
}

// maskAuthorization keeps the scheme ("Bearer", "Basic", "AWS4-HMAC-SHA256") so
// an operator sees which kind of credential came, and drops the credential. A
// value that does not start with a plausible scheme word is dropped whole: it may
// be a bare token.
func maskAuthorization(v string) string {
	v = strings.TrimSpace(v)
	i := strings.IndexByte(v, ' ')
	if i <= 0 || i > 32 || !httpguts.ValidHeaderFieldName(v[:i]) {
		return masked
	}
	return v[:i] + " " + masked
}

// maskCookie keeps cookie names and drops their values: "a=***; b=***".
func maskCookie(v string) string {
	parts := strings.Split(v, ";")
	for i, p := range parts {
		parts[i] = maskPair(strings.TrimSpace(p))
	}
	return strings.Join(parts, "; ")
}

// maskSetCookie keeps the cookie name only; attributes are not worth the parsing.
func maskSetCookie(v string) string {
	pair, _, _ := strings.Cut(v, ";")
	return maskPair(strings.TrimSpace(pair))
}

// maskPair turns "name=value" into "name=***", and anything else into "***".
func maskPair(p string) string {
	name, _, ok := strings.Cut(p, "=")
	if !ok || name == "" || !httpguts.ValidHeaderFieldName(name) {
		return masked
	}
	return name + "=" + masked
}

// requestTarget masks the secret query and path parameters of a request target
// ("/path?token=abc&x=1" -> "/path?token=***&x=1"). The rest stays as sent,
// undecoded, so the log shows what the client sent.
func (m *masker) requestTarget(target string) string {
	path, query, hasQuery := strings.Cut(target, "?")
	// Path parameters (";jsessionid=...") carry session ids in some stacks.
	if seg, params, ok := strings.Cut(path, ";"); ok {
		path = seg + ";" + m.query(params)
	}
	if !hasQuery {
		return path
	}
	return path + "?" + m.query(query)
}

// url masks a full URL such as a Referer: the query as in requestTarget, and a
// userinfo ("https://user:pass@host/") whole.
func (m *masker) url(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			u = u[:i+3] + masked + rest[at:]
		}
	}
	u, frag, hasFrag := strings.Cut(u, "#")
	u = m.requestTarget(u)
	if hasFrag {
		u += "#" + frag
	}
	return u
}

// query masks the values of secret parameters. Both '&' and ';' separate
// parameters here: some servers still split on ';', and a secret they would read
// must not slip past the mask. A query without secrets is returned as it is.
func (m *masker) query(q string) string {
	var b *strings.Builder // made at the first secret
	for start := 0; start <= len(q); {
		end := strings.IndexAny(q[start:], "&;")
		if end < 0 {
			end = len(q)
		} else {
			end += start
		}
		pair := q[start:end]
		if name, _, ok := strings.Cut(pair, "="); ok && m.secretName(unescapeName(name)) {
			if b == nil {
				b = new(strings.Builder)
				b.Grow(len(q))
				b.WriteString(q[:start])
			}
			b.WriteString(name)
			b.WriteString("=" + masked)
		} else if b != nil {
			b.WriteString(pair)
		}
		if b != nil && end < len(q) {
			b.WriteByte(q[end])
		}
		start = end + 1
	}
	if b == nil {
		return q
	}
	return b.String()
}

// unescapeName percent-decodes a parameter name leniently, so "api%5Fkey" and
// "api+key" are recognised as well as "api_key". A bad escape is kept as written.
func unescapeName(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
