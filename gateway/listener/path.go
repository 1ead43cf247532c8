package listener

import "github.com/portcullis/portcullis/gateway/config"

// PathNormalizer puts a request path into the one form routes are matched
// against, so that two spellings of a path cannot reach different rules (or slip
// past a rule) and a path cannot name something above the root. The policy:
//
//   - A percent-encoded unreserved character is decoded ("%41" → "A", "%2E" → "."),
//     other percent-encodings get upper-case hex ("%3a" → "%3A"): the two
//     normalisations of RFC 3986 §6.2.2.1-2 that never change what a URI means.
//     Reserved characters stay encoded (RFC 3986 §2.2: decoding them changes it).
//   - Dot segments are resolved as in RFC 3986 §5.2.4, after decoding, so "%2e%2E"
//     is "..". A ".." that would climb above the root is refused, not dropped.
//   - Empty segments ("//") are merged unless MergeSlashes is false.
//   - "%2F" and "%5C" (escaped slash and backslash) are refused (EscapedSlashes
//     reject, the default), kept as they are and never treated as separators
//     (keep), or decoded to "/" and then treated as separators (decode).
//   - NUL and the other control characters, raw or encoded, and raw backslashes
//     are refused: back ends disagree about them (some treat "\" as "/").
//   - A byte that may not appear in a path (space, '"', non-ASCII, ...) is
//     percent-encoded, so the output is always a valid path-absolute.
//   - An empty path is "/" (RFC 9110 §4.2.3); anything else must start with "/".
//
// The output is idempotent: normalising it again returns it unchanged.
type PathNormalizer struct {
	keepEmpty bool  // MergeSlashes false
	slashes   uint8 // slashReject, slashKeep, slashDecode
}

const (
	slashReject uint8 = iota
	slashKeep
	slashDecode
)

// Reasons Normalize gives for refusing a path.
const (
	ReasonNotAbsolute  = "path does not start with /"
	ReasonBadEscape    = "invalid percent-encoding"
	ReasonControl      = "control character in path"
	ReasonBackslash    = "backslash in path"
	ReasonEscapedSlash = "escaped slash (%2F or %5C) in path"
	ReasonAboveRoot    = "path climbs above the root"
)

// NewPathNormalizer returns the normaliser for p. An unknown EscapedSlashes value
// (which config validation refuses) is treated as reject.
func NewPathNormalizer(p config.PathPolicy) PathNormalizer {
	n := PathNormalizer{keepEmpty: p.MergeSlashes != nil && !*p.MergeSlashes}
	switch p.EscapedSlashes {
	case config.EscapedSlashesKeep:
		n.slashes = slashKeep
	case config.EscapedSlashesDecode:
		n.slashes = slashDecode
	}
	return n
}

const upperHex = "0123456789ABCDEF"

// Normalize returns the normal form of escapedPath (as from url.URL.EscapedPath),
// or a reason to refuse the request with 400. It allocates only when the normal
// form differs from the input.
func (n PathNormalizer) Normalize(escapedPath string) (path string, reason string, ok bool) {
	in := escapedPath
	if in == "" {
		return "/", "", true
	}
	if in[0] != '/' {
		return "", ReasonNotAbsolute, false
	}
	if n.isNormal(in) {
		return in, "", true
	}
	return n.normalize(in)
}

// normalize is Normalize for a path that starts with '/', byte by byte.
func (n PathNormalizer) normalize(in string) (string, string, bool) {
	var buf [256]byte
	out := buf[:0]
	var stack [32]int // where each kept segment starts in out
	segs := stack[:0]
	i := 1
	for {
		st := len(out)
		out = append(out, '/')
		more := false // a separator ended the segment
	segment:
		for i < len(in) {
			c := in[i]
			switch {
			case c == '/':
				i++
				more = true
				break segment
			case c == '%':
				if i+2 >= len(in) {
					return "", ReasonBadEscape, false
				}
				hi, lo := unhex(in[i+1]), unhex(in[i+2])
				if hi > 15 || lo > 15 {
					return "", ReasonBadEscape, false
				}
				i += 3
				v := hi<<4 | lo
				switch {
				case unreserved(v):
					out = append(out, v)
				case v == '/' || v == '\\':
					switch n.slashes {
					case slashReject:
						return "", ReasonEscapedSlash, false
					case slashDecode:
						more = true
						break segment
					}
					out = append(out, '%', upperHex[v>>4], upperHex[v&15])
				case v < 0x20 || v == 0x7f:
					return "", ReasonControl, false
				default:
					out = append(out, '%', upperHex[v>>4], upperHex[v&15])
				}
				continue
			case c < 0x20 || c == 0x7f:
				return "", ReasonControl, false
			case c == '\\':
				return "", ReasonBackslash, false
			case pchar(c):
				out = append(out, c)
			default:
				out = append(out, '%', upperHex[c>>4], upperHex[c&15])
			}
			i++
		}
		seg := out[st+1:]
		dot := len(seg) == 1 && seg[0] == '.'
		dotdot := len(seg) == 2 && seg[0] == '.' && seg[1] == '.'
		switch {
		case dot:
			out = out[:st]
		case dotdot:
			if len(segs) == 0 {
				return "", ReasonAboveRoot, false
			}
			out = out[:segs[len(segs)-1]]
			segs = segs[:len(segs)-1]
		case len(seg) == 0 && more && !n.keepEmpty:
			out = out[:st]
		case more:
			segs = append(segs, st)
		}
		if !more {
			// A last "." or ".." leaves a trailing slash (RFC 3986 §5.2.4 2B, 2C).
			if dot || dotdot {
				out = append(out, '/')
			}
			break
		}
	}
	if string(out) == in {
		return in, "", true
	}
	return string(out), "", true
}

// isNormal reports, in one cheap pass, whether p is already in normal form
// without percent-encodings: the common case, returned as it is.
func (n PathNormalizer) isNormal(p string) bool {
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if p[i-1] == '/' && !n.keepEmpty {
				return false
			}
		case c == '.':
			if p[i-1] == '/' && (i+1 == len(p) || p[i+1] == '/' ||
				p[i+1] == '.' && (i+2 == len(p) || p[i+2] == '/')) {
				return false
			}
		case !plainPath[c]:
			return false
		}
	}
	return true
}

// plainPath marks the bytes a normal path holds as they are (pchar without '%').
var plainPath = func() (t [256]bool) {
	for c := range 256 {
		t[c] = pchar(byte(c))
	}
	return t
}()

// unreserved reports RFC 3986 §2.3 unreserved characters.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// pchar reports the characters RFC 3986 §3.3 allows unencoded in a segment,
// except '%' (handled by the caller).
func pchar(c byte) bool {
	if unreserved(c) {
		return true
	}
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@':
		return true
	}
	return false
}
