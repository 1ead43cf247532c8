package listener

import "bytes"

// framer follows HTTP/1.1 request message framing (RFC 9112 §6) in the bytes a
// client sends, so that a request whose length two parsers could read differently
// is refused before net/http parses it. net/http itself resolves some of those cases
// silently (it drops Content-Length when Transfer-Encoding is present, RFC 9112
// §6.3 item 3, and accepts bare LF and obs-fold in a head), which leaves a handler
// unable to tell that the request was ambiguous.
//
// The framer is a byte-level state machine with constant memory: it never buffers,
// so heads, chunk lines and field names may be split across reads at any byte. It
// looks at every byte of a request head and of chunk-size lines, and skips body
// bytes and uninteresting field lines with bytes.IndexByte.
//
// It judges only framing. Everything else (method, target, field syntax, sizes) is
// net/http's job, which refuses with 400 and closes the connection; where net/http
// is stricter than the RFC (a chunk extension after whitespace, a chunk size of
// more than 16 digits) the request fails there, never passes with other framing.
type framer struct {
	state uint8
	flags uint8
	idx   uint8  // bytes matched: field name, "chunked", method
	cand  uint8  // field names (or methods) still matching
	pre   uint8  // bytes of the HTTP/2 preface matched at connection start; preNone: not looking
	nvals uint8  // Content-Length: 0 none, 1 digits, 2 trailing whitespace
	prevB byte   // last byte of the previous scan (for CR before LF at a buffer start)
	lastB byte   // last byte of the request line so far
	prev8 uint64 // the 8 bytes of the request line before lastB
	cl    uint64 // Content-Length of this message
	val   uint64 // value being parsed: Content-Length or chunk size
	left  uint64 // body or chunk-data bytes left to skip
}

// Scanner states.
const (
	stReqStart    uint8 = iota // before a request line: CR and LF are skipped (RFC 9112 §2.2)
	stMethod                   // first bytes of the request line: CONNECT and PRI are noted
	stReqLine                  // rest of the request line
	stFieldStart               // start of a field line, or of the empty line ending the section
	stName                     // field name, matched against the names that frame a message
	stSkipLine                 // rest of a field line that does not matter for framing
	stCLValue                  // Content-Length value
	stTEValue                  // Transfer-Encoding value
	stValueLF                  // CR seen after a Content-Length or Transfer-Encoding value
	stEndLF                    // CR seen at the start of a line: the section ends at LF
	stBody                     // Content-Length body
	stChunkSize                // chunk-size digits (RFC 9112 §7.1)
	stChunkBWS                 // whitespace after the chunk size
	stChunkExt                 // chunk extension, up to CR
	stChunkLF                  // CR seen at the end of a chunk line
	stChunkData                // chunk data
	stChunkCR                  // CR expected after chunk data
	stChunkDataLF              // LF expected after chunk data
	stPass                     // nothing more to judge: the connection began with the HTTP/2 preface
)

// Message flags.
const (
	fCL      uint8 = 1 << iota // a Content-Length line was seen
	fTE                        // a Transfer-Encoding line was seen
	fHTTP10                    // the request line ends in HTTP/1.0
	fUpgrade                   // CONNECT, PRI or an Upgrade field: the bytes after it may not be HTTP/1
	fTrailer                   // in the trailer section of a chunked body
)

// Field names (lower case) and methods that matter, and their candidate bits.
const (
	nameCL  = "content-length"
	nameTE  = "transfer-encoding"
	nameUp  = "upgrade"
	candCL  = 1
	candTE  = 2
	candUp  = 4
	mConn   = "CONNECT "
	mPRI    = "PRI "
	candCon = 1
	candPRI = 2
	chunked = "chunked"
	preNone = 0xff
	h2Pre   = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" // RFC 9113 §3.4
	maxCL   = 1<<63 - 1                          // net/http parses Content-Length into 63 bits
	http10  = uint64('H')<<56 | uint64('T')<<48 | uint64('T')<<40 | uint64('P')<<32 |
		uint64('/')<<24 | uint64('1')<<16 | uint64('.')<<8 | uint64('0')
)

// Reasons for refusing a request; they end up in the security event.
const (
	rsBareLF     = "bare LF line ending (RFC 9112 §2.2)"
	rsBareCR     = "bare CR (RFC 9112 §2.2)"
	rsObsFold    = "obs-fold line folding (RFC 9112 §5.2)"
	rsTEandCL    = "both Transfer-Encoding and Content-Length (RFC 9112 §6.1)"
	rsTwoTE      = "more than one Transfer-Encoding line"
	rsTENotChunk = "Transfer-Encoding other than chunked (RFC 9112 §6.3)"
	rsTE10       = "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)"
	rsCLNotNum   = "Content-Length is not a decimal number (RFC 9110 §8.6)"
	rsCLTwo      = "conflicting Content-Length values (RFC 9110 §8.6)"
	rsCLBig      = "Content-Length too large"
	rsChunkSize  = "malformed chunk size (RFC 9112 §7.1)"
	rsChunkBig   = "chunk size too large"
	rsChunkExt   = "malformed chunk extension (RFC 9112 §7.1.1)"
	rsChunkEnd   = "chunk data not followed by CRLF (RFC 9112 §7.1)"
)

func newFramer(h2c bool) framer {
	f := framer{pre: preNone}
	if h2c {
		f.pre = 0
	}
	return f
}

// scan follows the framing of p, the next bytes of the stream. It returns how many
// bytes of p may be delivered (cut) and, when the stream breaks a framing rule,
// the offset in p of the offending byte (at) and the reason; otherwise at is -1.
//
// Without a violation cut is len(p), except after a CONNECT, PRI or Upgrade
// request: the scan stops at its end and the caller holds the rest back, because
// those bytes may belong to a tunnel or another protocol (see guardConn).
//
// With a violation cut is at: the bytes before the offending one are delivered.
// The offending byte always comes before the empty line that would end its head,
// so net/http never has a complete head to act on; it gets the error while
// reading the head and answers 400. Withholding the whole head instead would
// make net/http close a keep-alive connection without a response: it peeks at
// the first bytes of the next request before parsing it and gives up silently
// when that read fails.
func (f *framer) scan(p []byte) (cut, at int, reason string) {
	if f.state == stPass {
		return len(p), -1, ""
	}
	if f.pre < uint8(len(h2Pre)) {
		// A connection that starts with the HTTP/2 preface is HTTP/2 from then on
		// (RFC 9113 §3.3); its frames are not HTTP/1 and must not be judged as such.
		// The preface bytes are also scanned as HTTP/1 (they are two valid heads) in
		// case a later byte shows that this is not the preface after all.
		k := 0
		for k < len(p) && int(f.pre)+k < len(h2Pre) && p[k] == h2Pre[int(f.pre)+k] {
			k++
		}
		switch {
		case int(f.pre)+k == len(h2Pre):
			f.state, f.pre = stPass, uint8(len(h2Pre))
			return len(p), -1, ""
		case k < len(p):
			f.pre = preNone
		}
	}
	cut, at, reason = f.scanHTTP1(p)
	if at < 0 && cut > 0 {
		f.prevB = p[cut-1]
		if f.pre != preNone {
			f.pre += uint8(cut) // only what was delivered counts towards the preface
		}
	}
	return cut, at, reason
}

// scanHTTP1 is scan without the HTTP/2 preface.
func (f *framer) scanHTTP1(p []byte) (cut, at int, reason string) {
	i := 0
	for i < len(p) {
		switch f.state {
		case stReqStart:
			if c := p[i]; c == '\r' || c == '\n' {
				i++
				continue
			}
			*f = framer{state: stMethod, cand: candCon | candPRI, pre: f.pre, prevB: f.prevB}

		case stMethod:
			c := p[i]
			m := f.cand
			if m&candCon != 0 && mConn[f.idx] != c {
				m &^= candCon
			}
			if m&candPRI != 0 && mPRI[f.idx] != c {
				m &^= candPRI
			}
			if m == 0 {
				f.state = stReqLine // c is judged as part of the line
				continue
			}
			f.cand, f.idx = m, f.idx+1
			i++
			if (m&candCon != 0 && int(f.idx) == len(mConn)) || (m&candPRI != 0 && int(f.idx) == len(mPRI)) {
				f.flags |= fUpgrade
				f.state = stReqLine
			}

		case stReqLine:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				f.feed(p[i:])
				i = len(p)
				continue
			}
			f.feed(p[i : i+j])
			i += j
			if f.lastB != '\r' {
				return i, i, rsBareLF
			}
			if f.prev8 == http10 {
				f.flags |= fHTTP10
			}
			i++
			f.state = stFieldStart

		case stFieldStart:
			switch p[i] {
			case '\r':
				f.state = stEndLF
				i++
			case '\n':
				return i, i, rsBareLF
			case ' ', '\t':
				return i, i, rsObsFold
			default:
				if f.flags&fTrailer != 0 {
					f.state = stSkipLine // trailer fields do not frame anything
				} else {
					f.state, f.idx, f.cand = stName, 0, candCL|candTE|candUp
				}
			}

		case stName:
			c := p[i]
			if c == ':' {
				i++
				if r := f.endName(); r != "" {
					return i - 1, i - 1, r
				}
				continue
			}
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			k, m := int(f.idx), f.cand
			if m&candCL != 0 && (k >= len(nameCL) || nameCL[k] != c) {
				m &^= candCL
			}
			if m&candTE != 0 && (k >= len(nameTE) || nameTE[k] != c) {
				m &^= candTE
			}
			if m&candUp != 0 && (k >= len(nameUp) || nameUp[k] != c) {
				m &^= candUp
			}
			if m == 0 {
				f.state = stSkipLine // c is judged as part of the line
				continue
			}
			f.cand, f.idx = m, f.idx+1
			i++

		case stSkipLine:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				i = len(p)
				continue
			}
			i += j
			if f.before(p, i) != '\r' {
				return i, i, rsBareLF
			}
			i++
			f.state = stFieldStart

		case stCLValue:
			switch c := p[i]; {
			case '0' <= c && c <= '9':
				if f.nvals == 2 {
					return i, i, rsCLNotNum
				}
				d := uint64(c - '0')
				if f.val > (maxCL-d)/10 {
					return i, i, rsCLBig
				}
				f.val, f.nvals = f.val*10+d, 1
			case c == ' ' || c == '\t':
				if f.nvals == 1 {
					f.nvals = 2
				}
			case c == '\r':
				if f.nvals == 0 {
					return i, i, rsCLNotNum
				}
				if f.flags&fCL != 0 && f.cl != f.val {
					return i, i, rsCLTwo
				}
				f.flags |= fCL
				f.cl = f.val
				f.state = stValueLF
			case c == '\n':
				return i, i, rsBareLF
			default:
				return i, i, rsCLNotNum
			}
			i++

		case stTEValue:
			// Only "chunked" is accepted, as by net/http: a coding list is refused
			// with 400 rather than 501, and chunked must be final (RFC 9112 §6.3).
			switch c := p[i]; {
			case c == ' ' || c == '\t':
				if f.idx != 0 && int(f.idx) < len(chunked) {
					return i, i, rsTENotChunk
				}
			case c == '\r':
				if int(f.idx) != len(chunked) {
					return i, i, rsTENotChunk
				}
				f.state = stValueLF
			case c == '\n':
				return i, i, rsBareLF
			default:
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				if int(f.idx) >= len(chunked) || chunked[f.idx] != c {
					return i, i, rsTENotChunk
				}
				f.idx++
			}
			i++

		case stValueLF:
			if p[i] != '\n' {
				return i, i, rsBareCR
			}
			i++
			f.state = stFieldStart

		case stEndLF:
			if p[i] != '\n' {
				return i, i, rsBareCR
			}
			i++
			switch {
			case f.flags&fTrailer != 0:
				f.state = stReqStart
			case f.flags&fTE != 0:
				f.state, f.val, f.nvals = stChunkSize, 0, 0
				continue
			case f.cl > 0:
				f.state, f.left = stBody, f.cl
				continue
			default:
				f.state = stReqStart // no body: RFC 9112 §6.3 item 6
			}
			if f.flags&fUpgrade != 0 {
				return i, -1, ""
			}

		case stBody:
			n := uint64(len(p) - i)
			if n < f.left {
				f.left -= n
				i = len(p)
				continue
			}
			i += int(f.left)
			f.left = 0
			f.state = stReqStart
			if f.flags&fUpgrade != 0 {
				return i, -1, ""
			}

		case stChunkSize:
			c := p[i]
			if d := unhex(c); d < 16 {
				if f.val>>60 != 0 {
					return i, i, rsChunkBig // more than 64 bits
				}
				f.val, f.nvals = f.val<<4|uint64(d), 1
				i++
				continue
			}
			if f.nvals == 0 {
				return i, i, rsChunkSize
			}
			switch c {
			case ' ', '\t':
				f.state = stChunkBWS
			case ';':
				f.state = stChunkExt
			case '\r':
				f.state = stChunkLF
			case '\n':
				return i, i, rsBareLF
			default:
				return i, i, rsChunkSize
			}
			i++

		case stChunkBWS:
			switch p[i] {
			case ' ', '\t':
			case ';':
				f.state = stChunkExt
			case '\r':
				f.state = stChunkLF
			case '\n':
				return i, i, rsBareLF
			default:
				return i, i, rsChunkExt
			}
			i++

		case stChunkExt:
			// chunk-ext is tokens and quoted strings; none of them holds CR or LF.
			c := p[i]
			if c == '\n' {
				return i, i, rsBareLF
			}
			if c == '\r' {
				f.state = stChunkLF
			}
			i++

		case stChunkLF:
			if p[i] != '\n' {
				return i, i, rsBareCR
			}
			i++
			if f.val == 0 {
				f.state = stFieldStart // last-chunk: the trailer section follows
				f.flags |= fTrailer
			} else {
				f.state, f.left = stChunkData, f.val
			}

		case stChunkData:
			n := uint64(len(p) - i)
			if n < f.left {
				f.left -= n
				i = len(p)
				continue
			}
			i += int(f.left)
			f.left = 0
			f.state = stChunkCR

		case stChunkCR:
			if p[i] != '\r' {
				return i, i, rsChunkEnd
			}
			f.state = stChunkDataLF
			i++

		case stChunkDataLF:
			if p[i] != '\n' {
				return i, i, rsChunkEnd
			}
			f.state, f.val, f.nvals = stChunkSize, 0, 0
			i++

		default: // stPass
			return len(p), -1, ""
		}
	}
	return len(p), -1, ""
}

// endName is called at the colon ending a field name: it starts the value state
// of a framing field and refuses combinations that make the length ambiguous.
func (f *framer) endName() string {
	k := int(f.idx)
	switch {
	case f.cand&candCL != 0 && k == len(nameCL):
		if f.flags&fTE != 0 {
			return rsTEandCL
		}
		f.state, f.val, f.nvals = stCLValue, 0, 0
	case f.cand&candTE != 0 && k == len(nameTE):
		switch {
		case f.flags&fTE != 0:
			return rsTwoTE
		case f.flags&fCL != 0:
			return rsTEandCL
		case f.flags&fHTTP10 != 0:
			return rsTE10
		}
		f.flags |= fTE
		f.state, f.idx = stTEValue, 0
	case f.cand&candUp != 0 && k == len(nameUp):
		f.flags |= fUpgrade
		f.state = stSkipLine
	default:
		f.state = stSkipLine
	}
	return ""
}

// feed keeps the last nine bytes of the request line: the version before CR.
func (f *framer) feed(b []byte) {
	if len(b) > 9 {
		b = b[len(b)-9:]
	}
	for _, c := range b {
		f.prev8 = f.prev8<<8 | uint64(f.lastB)
		f.lastB = c
	}
}

// before returns the stream byte before p[i], which may be in the previous read.
func (f *framer) before(p []byte, i int) byte {
	if i > 0 {
		return p[i-1]
	}
	return f.prevB
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 255
}
