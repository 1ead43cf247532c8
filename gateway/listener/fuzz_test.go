package listener

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
)

// entropy hands out the fuzzer's bytes as small choices; zeros when used up.
type entropy struct {
	b []byte
	i int
}

func (e *entropy) n(k int) int {
	if e.i >= len(e.b) {
		return 0
	}
	e.i++
	return int(e.b[e.i-1]) % k
}

func (e *entropy) pick(s ...string) string { return s[e.n(len(s))] }

// bodyText returns body bytes made to look like framing: heads, chunk lines,
// bare LFs and CRs.
func (e *entropy) bodyText() string {
	var b strings.Builder
	for range e.n(5) {
		b.WriteString(e.pick("x", "\r\n", "\n", "\r", "0\r\n\r\n", "\r\n\r\n",
			"GET /s HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
			"POST / HTTP/1.1\nContent-Length: 1\n\n", " \t", "\x00\xff", "5;a=b\r\n"))
	}
	return b.String()
}

// genStream builds a stream of valid HTTP/1.x requests from the fuzzer's bytes.
// It returns the bodies each request carries and whether net/http should read
// the stream exactly so (it refuses whitespace before a chunk extension and
// leading empty lines, which the RFC allows).
func genStream(data []byte) (stream string, bodies []string, goStrict bool) {
	e := &entropy{b: data}
	var s strings.Builder
	goStrict = true
	for range 1 + e.n(4) {
		if e.n(16) == 0 {
			s.WriteString("\r\n")
			goStrict = false
		}
		v := "HTTP/1.1"
		if e.n(6) == 0 {
			v = "HTTP/1.0"
		}
		fmt.Fprintf(&s, "%s /%s HTTP/%s\r\nHost: example.test\r\n",
			e.pick("GET", "POST", "PUT", "PATCH", "OPTIONS", "DELETE", "CONNECT", "CONNECTX", "PRI", "PRIX"), e.pick("", "a", "a/b?c=d", "%2F"), v[5:])
		fields := func() {
			for range e.n(4) {
				fmt.Fprintf(&s, "%s:%s%s%s\r\n",
					e.pick("X-A", "Content-Lengthy", "X-Content-Length", "Transfer-Encodings", "Transfer-Encodin",
						"Content-Lengt", "Accept", "Upgrade-Insecure-Requests", "Upgrade", "X-Transfer-Encoding"),
					e.pick("", " ", "\t "),
					e.pick("chunked", "5", "Content-Length: 5", "GET / HTTP/1.1", "a, b", "", "websocket"),
					e.pick("", " ", "\t"))
			}
		}
		fields()
		body := e.bodyText()
		mode := e.n(3)
		if v == "HTTP/1.0" && mode == 2 {
			mode = 1
		}
		switch mode {
		case 1:
			name := e.pick("Content-Length", "content-length", "CONTENT-LENGTH", "Content-length")
			fmt.Fprintf(&s, "%s:%s%d%s\r\n", name, e.pick("", " ", "  "), len(body), e.pick("", " ", "\t"))
			if e.n(4) == 0 {
				fmt.Fprintf(&s, "Content-Length: %d\r\n", len(body))
			}
			fields()
			s.WriteString("\r\n" + body)
		case 2:
			fmt.Fprintf(&s, "Transfer-Encoding:%s%s%s\r\n", e.pick("", " ", " \t"), e.pick("chunked", "Chunked", "CHUNKED"), e.pick("", " "))
			fields()
			s.WriteString("\r\n")
			for rest := body; ; {
				k := min(len(rest), e.n(8))
				if k == 0 && len(rest) > 0 {
					k = len(rest)
				}
				size := e.pick("%x", "%X", "0%x", "000%X")
				fmt.Fprintf(&s, size, k)
				ext := e.pick("", ";a", ";a=b", ";q=\"x;y=\\\"z\"", " ;bws", "\t;t")
				if ext != "" && (ext[0] == ' ' || ext[0] == '\t') {
					goStrict = false
				}
				s.WriteString(ext + "\r\n")
				if k == 0 {
					break
				}
				s.WriteString(rest[:k] + "\r\n")
				rest = rest[k:]
			}
			for range e.n(3) {
				s.WriteString(e.pick("X-Trailer: 1\r\n", "X-T:\r\n", "Checksum: chunked\r\n"))
			}
			s.WriteString("\r\n")
		default:
			body = ""
			fields()
			s.WriteString("\r\n")
		}
		bodies = append(bodies, body)
	}
	return s.String(), bodies, goStrict
}

// cutter returns read sizes taken from cuts, cycling.
func cutter(cuts []byte) func() int {
	i := 0
	return func() int {
		if len(cuts) == 0 {
			return 1 << 20
		}
		c := cuts[i%len(cuts)]
		i++
		if c == 0xff {
			return 1 << 20
		}
		return int(c)%32 + 1
	}
}

func FuzzFramingGuard(f *testing.F) {
	for _, s := range validStreams {
		f.Add([]byte(s), []byte{1, 7, 3})
	}
	for _, tc := range invalidStreams {
		f.Add([]byte(tc.stream), []byte{5, 2})
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		// Any bytes: the verdict does not depend on how the stream is cut.
		at, reason, _ := runFramer(t, false, data, fixed(len(data)+1))
		if a, r, _ := runFramer(t, false, data, cutter(cuts)); a != at || r != reason {
			t.Fatalf("cut reads: %d %q; one read: %d %q", a, r, at, reason)
		}
		runFramer(t, true, data, cutter(cuts))

		// A valid stream made from the same bytes is never refused, ends between
		// requests, and comes through a guardConn unchanged.
		stream, bodies, goStrict := genStream(data)
		if a, r, fr := runFramer(t, false, []byte(stream), cutter(cuts)); a >= 0 || fr.state != stReqStart {
			t.Fatalf("valid stream refused at %d (%s) or ended in state %d:\n%q", a, r, fr.state, stream)
		}
		var pieces [][]byte
		next := cutter(cuts)
		for rest := []byte(stream); len(rest) > 0; {
			k := min(next(), len(rest))
			pieces = append(pieces, rest[:k])
			rest = rest[k:]
		}
		g := newGuardConn(&Server{events: newEventLog()}, &memConn{pieces: pieces}, false, true)
		if got, err := readAllSized(g, 1+len(cuts)%4096); err != nil || string(got) != stream {
			t.Fatalf("through the guard: %v\n%q\n%q", err, got, stream)
		}

		// net/http frames it the same way: same requests, same bodies.
		if !goStrict {
			return
		}
		br := bufio.NewReader(strings.NewReader(stream))
		for i, want := range bodies {
			req, err := http.ReadRequest(br)
			if err != nil {
				t.Fatalf("net/http request %d: %v\n%q", i, err, stream)
			}
			b, err := io.ReadAll(req.Body)
			if err != nil || string(b) != want {
				t.Fatalf("net/http request %d body %q, %v; want %q\n%q", i, b, err, want, stream)
			}
		}
		if rest, _ := io.ReadAll(br); len(rest) != 0 {
			t.Fatalf("net/http left %q", rest)
		}
	})
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2E/x", "//a//b/", "/a%2Fb", "/a%5c", "/%41%zz", "/a b", "/a/./b/.", "/\x00"} {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, in string, mode uint8) {
		n := NewPathNormalizer(policy(mode&1 == 0, []string{"", config.EscapedSlashesKeep, config.EscapedSlashesDecode}[int(mode>>1)%3]))
		out, reason, ok := n.Normalize(in)
		if in != "" && in[0] == '/' && n.isNormal(in) {
			if slow, _, sok := n.normalize(in); !sok || slow != in {
				t.Fatalf("fast path kept %q, slow path gives %q", in, slow)
			}
		}
		if !ok {
			if reason == "" || out != "" {
				t.Fatalf("refused %q without a reason or with output %q", in, out)
			}
			return
		}
		if out == "" || out[0] != '/' {
			t.Fatalf("Normalize(%q) = %q", in, out)
		}
		again, r2, ok2 := n.Normalize(out)
		if !ok2 || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q (%s)", in, out, again, r2)
		}
		if mode&1 == 0 && strings.Contains(out, "//") {
			t.Fatalf("Normalize(%q) = %q keeps //", in, out)
		}
		for _, seg := range strings.Split(out, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("Normalize(%q) = %q keeps a dot segment", in, out)
			}
		}
		if bytes.ContainsAny([]byte(out), "\\\x00\r\n ") {
			t.Fatalf("Normalize(%q) = %q", in, out)
		}
	})
}
