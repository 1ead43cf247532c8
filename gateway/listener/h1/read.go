package h1

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// connReader is the reader under the connection's bufio.Reader (as net/http's
// connReader). While a head is read it enforces the head limit, keeps a copy of
// the bytes (the raw head, which http.ReadRequest does not keep) and sets the
// read-header deadline when a head needs more than one read. While a body is
// read it clears the deadlines it set, so that uploads are not cut by them.
type connReader conn

func (cr *connReader) Read(p []byte) (int, error) {
	c := (*conn)(cr)
	if c.head {
		if c.remain <= 0 {
			c.hitLimit = true
			return 0, io.EOF
		}
		if int64(len(p)) > c.remain {
			p = p[:c.remain]
		}
		if c.headSeen && !c.hdrArmed {
			c.armHeaderDeadline()
		}
		n, err := c.readConn(p)
		if n > 0 {
			c.remain -= int64(n)
			c.headSeen = true
			s := c.scratch()
			s.head = append(s.head, p[:n]...)
		}
		return n, err
	}
	switch {
	case c.draining && c.rdl != rdlDrain && c.o.ReadHeaderTimeout > 0:
		// The handler is done with the body and we read the rest to keep the
		// connection: a client that stalls must not hold us.
		c.rwc.SetReadDeadline(time.Now().Add(c.o.ReadHeaderTimeout))
		c.rdl = rdlDrain
	case c.rdl == rdlIdle || c.rdl == rdlHeader || c.rdl == rdlUnknown:
		c.rwc.SetReadDeadline(time.Time{})
		c.rdl = rdlNone
	}
	n, err := c.readConn(p)
	if err != nil {
		// As net/http: a failed read means the connection is dead (or the
		// handler's own deadline passed); the request's context ends.
		if w := c.cur; w != nil {
			w.cancel()
		}
	}
	return n, err
}

// armHeaderDeadline starts the read-header timeout of a head whose first bytes
// have arrived: RFC 9112 §9.5 leaves timeouts to the server; this one bounds a
// slow client (slowloris) without counting the idle wait before the head.
func (c *conn) armHeaderDeadline() {
	c.hdrArmed = true
	if d := c.o.ReadHeaderTimeout; d > 0 {
		c.rwc.SetReadDeadline(time.Now().Add(d))
		c.rdl = rdlHeader
	} else if c.rdl != rdlNone {
		c.rwc.SetReadDeadline(time.Time{})
		c.rdl = rdlNone
	}
}

// readRequest reads the next request head with http.ReadRequest and makes the
// checks net/http's server makes around it (conn.readRequest), in its order.
func (c *conn) readRequest() (*http.Request, error) {
	c.head, c.hitLimit = true, false
	// The limit is on bytes read from the connection during the head, as
	// net/http's; it has one buffer of slack, and the exact size is checked
	// below on the raw head.
	c.remain = int64(c.o.MaxHeaderBytes) + bufSize
	if c.s != nil {
		c.s.head = c.s.head[:0]
	}
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		s := c.scratch()
		s.head = append(s.head, b...)
	}
	if c.lastMethod == "POST" {
		// RFC 9112 §2.2 asks a server to ignore at least one empty line before
		// a request line; net/http does so after a POST only (old clients
		// sent CRLF after a body), and we match it.
		peek, _ := c.br.Peek(4)
		c.br.Discard(leadingCRLF(peek))
	}
	start := c.captured() - c.br.Buffered()
	req, err := http.ReadRequest(c.br)
	c.head = false
	if err != nil {
		if c.hitLimit {
			return nil, errHeadTooLarge
		}
		return nil, err
	}
	end := c.captured() - c.br.Buffered()
	if end-start > c.o.MaxHeaderBytes {
		return nil, errHeadTooLarge
	}
	if req.ProtoMajor != 1 {
		// RFC 9110 §15.6.6. net/http also passes "PRI * HTTP/2.0" to the
		// handler for a hijack; without hijacking we cannot use it.
		return nil, statusError{code: http.StatusHTTPVersionNotSupported, kind: KindUnsupportedVer,
			text: "unsupported protocol version"}
	}
	c.lastMethod = req.Method

	fields, host, haveHost := scanHead(c.s.head[start:end])
	// RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, with more than
	// one (http.ReadRequest refuses that), or with an invalid one. The Host
	// field is checked even when the target is in absolute form, whose
	// authority then wins (§3.2.2; http.ReadRequest sets r.Host from it).
	if req.ProtoAtLeast(1, 1) && !haveHost && req.Method != "CONNECT" {
		return nil, badRequest("missing required Host header")
	}
	if haveHost && !validHost(host) {
		return nil, badRequest("malformed Host header")
	}
	// http.ReadRequest accepts field names with spaces; net/http's server
	// then refuses them (RFC 9110 §5.1: a field name is a token).
	for k, vv := range req.Header {
		if !validFieldName(k) {
			return nil, badRequest("invalid header name")
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return nil, badRequest("invalid header value")
			}
		}
	}
	if c.o.MaxHeaders > 0 && fields > c.o.MaxHeaders {
		return nil, statusError{code: http.StatusRequestHeaderFieldsTooLarge, kind: KindTooManyHeaders,
			text: strconv.Itoa(fields) + " header fields, limit " + strconv.Itoa(c.o.MaxHeaders), linger: true}
	}
	return req, nil
}

func (c *conn) captured() int {
	if c.s == nil {
		return 0
	}
	return len(c.s.head)
}

func leadingCRLF(b []byte) int {
	n := 0
	for n < len(b) && (b[n] == '\r' || b[n] == '\n') {
		n++
	}
	return n
}

// scanHead reads what http.ReadRequest does not return from a head it
// accepted: the number of field lines, and whether there was a Host field and
// its value (ReadRequest deletes Host from the header, and for an absolute-form
// target sets r.Host from the target instead). Lines end in LF with an
// optional CR, as net/textproto reads them; a line starting with SP or HTAB
// continues the previous field (obs-fold, RFC 9112 §5.2) and is joined with a
// space, as net/textproto joins it.
func scanHead(h []byte) (fields int, host []byte, haveHost bool) {
	i := bytes.IndexByte(h, '\n')
	if i < 0 {
		return 0, nil, false
	}
	h = h[i+1:] // the request line
	inHost, folded := false, false
	for len(h) > 0 {
		var line []byte
		if i = bytes.IndexByte(h, '\n'); i < 0 {
			line, h = h, nil
		} else {
			line, h = h[:i], h[i+1:]
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if inHost {
				if !folded {
					host = append([]byte(nil), host...)
					folded = true
				}
				host = append(append(host, ' '), trimSpace(line)...)
			}
			continue
		}
		fields++
		inHost = len(line) >= 5 && line[4] == ':' && asciiEqualFold(line[:4], "host")
		if inHost {
			haveHost, folded = true, false
			host = trimSpace(line[5:])
		}
	}
	return fields, trimLeftOWS(host), haveHost
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func trimLeftOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// validHost is net/http's Host check: RFC 9110 §7.2 says uri-host [":" port],
// and like net/http we only refuse bytes that cannot appear in any of those
// (reg-name, IP literals with zones, port): letters, digits, the sub-delims,
// "-._~%:[]".
func validHost[T string | []byte](h T) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!$&'()*+,;=-._~%:[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validFieldName: a token (RFC 9110 §5.1, §5.6.2).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c < 0x80 && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// validFieldValue: no control characters other than HTAB (RFC 9110 §5.5).
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
