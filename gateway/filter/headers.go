package filter

import "net/textproto"

// SameHeaderName reports whether two request header names would reach an
// application as the same header: compared ASCII case-insensitively (RFC 9110
// §5.1), and with "_" equal to "-", because CGI, WSGI, Rack and PHP turn both
// X-User and X_User into HTTP_X_USER. A filter that removes client-sent copies of
// a header it sets itself (an identity or token header) must remove every
// spelling, or a client could forge the header under a name the gateway never
// looked at. It also matches a key that a filter before this one wrote without
// canonicalising it.
func SameHeaderName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if x, y := a[i], b[i]; x != y && foldHeaderByte(x) != foldHeaderByte(y) {
			return false
		}
	}
	return true
}

// foldHeaderByte maps a byte of a header name to the form SameHeaderName compares.
func foldHeaderByte(c byte) byte {
	switch {
	case c == '_':
		return '-'
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	}
	return c
}

// ReservedRequestHeader reports whether a request header is one that no value
// taken from a caller's credentials (a claim, say) may set: it frames the message
// (Content-Length, Content-Type, Transfer-Encoding, Trailer), is hop-by-hop
// (Connection, Keep-Alive, Proxy-Connection, Te, Upgrade; RFC 9110 §7.6.1), routes
// it (Host, Forwarded, X-Forwarded-For, -Host, -Proto), carries credentials
// (Authorization, Proxy-Authorization, Cookie, Set-Cookie) or carries trace
// context (Traceparent, Tracestate). Filters refuse such a header as the target of
// a claim mapping when the config is loaded. The name may be in any case and may
// write "_" for "-" (X_Forwarded_For), since applications read both alike (see
// SameHeaderName).
func ReservedRequestHeader(name string) bool {
	b := []byte(name)
	for i, c := range b {
		if c == '_' {
			b[i] = '-'
		}
	}
	switch textproto.CanonicalMIMEHeaderKey(string(b)) {
	case "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
		"Host", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"Content-Length", "Content-Type", "Transfer-Encoding", "Trailer",
		"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade",
		"Traceparent", "Tracestate":
		return true
	}
	return false
}

// Quotable reports whether s can stand inside an RFC 9110 quoted-string (§5.6.4)
// without escapes: printable ASCII other than '"' and '\'. Filters check a
// configured realm with it before writing it into a WWW-Authenticate challenge.
func Quotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
