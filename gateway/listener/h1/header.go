package h1

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// appendHeader appends the handler's fields, sorted by name as net/http writes
// them, without the ones commit decides on. Names that are not tokens are
// dropped and CR, LF and NUL in values become spaces (RFC 9110 §5.5), so a
// handler cannot split the response; net/http drops and replaces the same.
func (w *response) appendHeader(b []byte, informational bool) []byte {
	s := w.s
	s.keys = s.keys[:0]
	for k := range w.header {
		s.keys = append(s.keys, k)
	}
	slices.Sort(s.keys)
	for _, k := range s.keys {
		switch k {
		case "Content-Length", "Transfer-Encoding":
			continue
		case "Connection":
			if !informational {
				continue
			}
		case "Content-Type":
			if w.status == http.StatusNotModified {
				continue // RFC 9110 §15.4.5: as net/http, a 304 keeps no Content-Type
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if !informational {
				w.prefixTrailers = true
			}
			continue
		}
		b = appendField(b, k, w.header[k])
	}
	return b
}

func appendField(b []byte, k string, vv []string) []byte {
	if !validFieldName(k) {
		return b
	}
	for _, v := range vv {
		b = append(b, k...)
		b = append(b, ": "...)
		b = appendValue(b, v)
		b = append(b, "\r\n"...)
	}
	return b
}

func appendValue(b []byte, v string) []byte {
	i, j := 0, len(v)
	for i < j && isSpace(v[i]) {
		i++
	}
	for j > i && isSpace(v[j-1]) {
		j--
	}
	for ; i < j; i++ {
		c := v[i]
		if c == '\r' || c == '\n' || c == 0 {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

func appendStatusLine(b []byte, is11 bool, code int) []byte {
	if is11 {
		b = append(b, "HTTP/1.1 "...)
	} else {
		b = append(b, "HTTP/1.0 "...)
	}
	b = strconv.AppendInt(b, int64(code), 10)
	if text := http.StatusText(code); text != "" {
		b = append(b, ' ')
		b = append(b, text...)
	} else {
		b = append(b, " status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

// finalTrailers collects the trailer fields (RFC 9110 §6.5) as net/http does:
// the ones announced in the Trailer header, and keys with http.TrailerPrefix.
func (w *response) finalTrailers() http.Header {
	var t http.Header
	for k, vv := range w.header {
		if kk, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			if t == nil {
				t = make(http.Header)
			}
			t[kk] = vv
		}
	}
	for _, k := range w.trailers {
		for _, v := range w.header[k] {
			if t == nil {
				t = make(http.Header)
			}
			t.Add(k, v)
		}
	}
	return t
}

// hasToken reports whether a comma-separated list field (RFC 9110 §5.6.1) has
// the token, case-insensitively.
func hasToken(vals []string, tok string) bool {
	for _, v := range vals {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(f, " \t"), tok) {
				return true
			}
		}
	}
	return false
}

// validTrailer refuses the fields RFC 9110 §6.5.1 does not allow in trailers
// (framing, routing, authentication, controls, content metadata), the same
// list as net/http's.
func validTrailer(k string) bool {
	if strings.HasPrefix(k, "If-") {
		return false
	}
	switch k {
	case "Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length",
		"Content-Range", "Content-Type", "Expect", "Host", "Keep-Alive", "Max-Forwards", "Pragma",
		"Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Range", "Realm", "Te",
		"Trailer", "Transfer-Encoding", "Www-Authenticate":
		return false
	}
	return true
}
