package listener

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// runFramer feeds data to a framer in reads of the sizes next returns, as
// guardConn does (held bytes are fed again), and returns the stream offset and
// reason of the first violation, or -1.
func runFramer(t testing.TB, h2c bool, data []byte, next func() int) (at int, reason string, f framer) {
	f = newFramer(h2c)
	off := 0
	for off < len(data) {
		n := min(max(next(), 1), len(data)-off)
		cut, a, r := f.scan(data[off : off+n])
		if a >= 0 {
			if cut > a {
				t.Fatalf("cut %d after the violation at %d", cut, a)
			}
			return off + a, r, f
		}
		if cut == 0 {
			t.Fatalf("no progress at offset %d", off)
		}
		off += cut
	}
	return -1, "", f
}

func fixed(n int) func() int { return func() int { return n } }

// splitsAgree checks that every way of cutting data in two, and reading it a
// byte at a time, gives the verdict of reading it at once.
func splitsAgree(t *testing.T, h2c bool, data []byte) (int, string) {
	t.Helper()
	at, reason, _ := runFramer(t, h2c, data, fixed(len(data)))
	if a, r, _ := runFramer(t, h2c, data, fixed(1)); a != at || r != reason {
		t.Fatalf("byte by byte: %d %q, at once: %d %q", a, r, at, reason)
	}
	for k := 1; k < len(data); k++ {
		first := true
		a, r, _ := runFramer(t, h2c, data, func() int {
			if first {
				first = false
				return k
			}
			return len(data)
		})
		if a != at || r != reason {
			t.Fatalf("split at %d: %d %q, at once: %d %q", k, a, r, at, reason)
		}
	}
	return at, reason
}

// ch is one chunk of a chunked body.
func ch(data string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(data), data) }

// post is a request with a Content-Length body.
func post(body string) string {
	return fmt.Sprintf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

var validStreams = map[string]string{
	"get":                       "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"leading":                   "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"pipelined":                 "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
	"cl body with heads inside": post("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\n\n") + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
	"chunked": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n0A;name=val;q=\"a;b=c\"\r\n0123456789\r\n1 ;bws\r\n\n\r\n000\r\nX-Trailer: t\r\nContent-Length: 9\r\n\r\n" +
		"GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
	"chunk data with CRLF and heads": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
		ch("\r\n\r\nGET / HTTP/1.1\n\nX: y\r\n\r\n") + ch("\r") + ch("\n") + "0\r\n\r\n",
	"case and whitespace": "POST / HTTP/1.1\r\nhost: a\r\ntransfer-ENCODING:\t Chunked \t\r\n\r\n0\r\n\r\n" +
		"POST / HTTP/1.1\r\nCONTENT-LENGTH:  3 \r\ncontent-length: 3\r\n\r\nabc",
	"look-alike names": "GET / HTTP/1.1\r\nContent-Lengthy: x\r\nX-Content-Length: abc\r\nTransfer-Encodings: gzip\r\n" +
		"Content-Lengt: 1\r\nTransfer-Encodin: x\r\nUpgrade-Insecure-Requests: 1\r\n: empty name\r\n\r\n",
	"http10 with length": "POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nok",
	"cl zero":            "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
	"upgrade then http":  "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\n\r\n",
}

func TestFramerValid(t *testing.T) {
	for name, s := range validStreams {
		t.Run(name, func(t *testing.T) {
			if at, reason := splitsAgree(t, false, []byte(s)); at >= 0 {
				t.Fatalf("refused at %d (%q): %s", at, s[at:], reason)
			}
			if _, _, f := runFramer(t, false, []byte(s), fixed(7)); f.state != stReqStart {
				t.Fatalf("stream ends in state %d, not between requests", f.state)
			}
		})
	}
}

func TestFramerBigChunk(t *testing.T) {
	// 64-bit chunk sizes and leading zeros are valid; the body is then cut short.
	s := "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000000FfFfFfFfFfFfFfFf\r\nabc"
	if at, reason := splitsAgree(t, false, []byte(s)); at >= 0 {
		t.Fatalf("refused at %d: %s", at, reason)
	}
}

func TestFramerH2CPreface(t *testing.T) {
	// Frames after the preface contain LF and CR in any order: never judged.
	s := h2Pre + "\x00\x00\x12\x04\x00\x00\x00\x00\x00\n\n\r\x00Transfer-Encoding: x\n"
	if at, reason := splitsAgree(t, true, []byte(s)); at >= 0 {
		t.Fatalf("refused at %d: %s", at, reason)
	}
	// Without h2c the same bytes are HTTP/1 (PRI is held back like an upgrade).
	if at, _ := splitsAgree(t, false, []byte(s)); at < 0 {
		t.Fatal("frames judged as HTTP/1 passed")
	}
	// A request that starts like the preface and then is not.
	if at, _ := splitsAgree(t, true, []byte("PRI * HTTP/2.0\r\n\r\nGET / HTTP/1.1\r\nX: a\nb\r\n\r\n")); at < 0 {
		t.Fatal("near-preface passed")
	}
}

var invalidStreams = []struct {
	name, stream, reason string
	at                   string // the stream up to the offending byte
}{
	{"te+cl", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", rsTEandCL, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length"},
	{"cl+te", "POST / HTTP/1.1\r\nContent-Length: 3\r\ntransfer-encoding: chunked\r\n\r\n", rsTEandCL, "POST / HTTP/1.1\r\nContent-Length: 3\r\ntransfer-encoding"},
	{"two te", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", rsTwoTE, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding"},
	{"te gzip", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", rsTENotChunk, "POST / HTTP/1.1\r\nTransfer-Encoding: "},
	{"te list", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", rsTENotChunk, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked"},
	{"te empty", "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", rsTENotChunk, "POST / HTTP/1.1\r\nTransfer-Encoding:"},
	{"te chunk", "POST / HTTP/1.1\r\nTransfer-Encoding: chunk\r\n\r\n", rsTENotChunk, "POST / HTTP/1.1\r\nTransfer-Encoding: chunk"},
	{"te 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", rsTE10, "POST / HTTP/1.0\r\nTransfer-Encoding"},
	{"cl letters", "POST / HTTP/1.1\r\nContent-Length: 1a\r\n\r\n", rsCLNotNum, "POST / HTTP/1.1\r\nContent-Length: 1"},
	{"cl sign", "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", rsCLNotNum, "POST / HTTP/1.1\r\nContent-Length: "},
	{"cl list", "POST / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n", rsCLNotNum, "POST / HTTP/1.1\r\nContent-Length: 1"},
	{"cl inner space", "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", rsCLNotNum, "POST / HTTP/1.1\r\nContent-Length: 1 "},
	{"cl empty", "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", rsCLNotNum, "POST / HTTP/1.1\r\nContent-Length: "},
	{"cl two", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", rsCLTwo, "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2"},
	{"cl huge", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", rsCLBig, "POST / HTTP/1.1\r\nContent-Length: 999999999999999999"},
	{"obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", rsObsFold, "GET / HTTP/1.1\r\nX: a\r\n"},
	{"first line folded", "GET / HTTP/1.1\r\n\tX: a\r\n\r\n", rsObsFold, "GET / HTTP/1.1\r\n"},
	{"bare lf request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", rsBareLF, "GET / HTTP/1.1"},
	{"bare lf field", "GET / HTTP/1.1\r\nHost: a\n\r\n", rsBareLF, "GET / HTTP/1.1\r\nHost: a"},
	{"bare lf end", "GET / HTTP/1.1\r\nHost: a\r\n\n", rsBareLF, "GET / HTTP/1.1\r\nHost: a\r\n"},
	{"bare lf in cl", "GET / HTTP/1.1\r\nContent-Length: 0\n\r\n", rsBareLF, "GET / HTTP/1.1\r\nContent-Length: 0"},
	{"bare cr end", "GET / HTTP/1.1\r\n\rX\r\n\r\n", rsBareCR, "GET / HTTP/1.1\r\n\r"},
	{"chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", rsChunkSize, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{"chunk bare lf", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n", rsBareLF, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5"},
	{"chunk ext bare lf", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nhello\r\n", rsBareLF, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a"},
	{"chunk no crlf", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcGET / HTTP/1.1\r\n\r\n", rsChunkEnd, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc"},
	{"chunk bws junk", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 x\r\nabc\r\n", rsChunkExt, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 "},
	{"chunk huge", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", rsChunkBig, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1111111111111111"},
	{"trailer fold", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n", rsObsFold, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n"},
	{"trailer bare lf", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\r\n", rsBareLF, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a"},
	{"second request", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", rsTEandCL,
		"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding"},
	{"smuggled in body of valid", "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\nX: y\r\n\r\n", rsBareLF, "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1"},
}

func TestFramerInvalid(t *testing.T) {
	for _, tc := range invalidStreams {
		t.Run(tc.name, func(t *testing.T) {
			at, reason := splitsAgree(t, false, []byte(tc.stream))
			if at < 0 {
				t.Fatal("not refused")
			}
			if reason != tc.reason || at != len(tc.at) {
				t.Fatalf("refused at %d (%q) for %q, want at %d for %q", at, tc.stream[:at], reason, len(tc.at), tc.reason)
			}
		})
	}
}

// memConn is a net.Conn whose reads return the pieces of data in turn.
type memConn struct {
	net.Conn
	mu     sync.Mutex
	pieces [][]byte
	closed bool
}

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.pieces[0])
	if c.pieces[0] = c.pieces[0][n:]; len(c.pieces[0]) == 0 {
		c.pieces = c.pieces[1:]
	}
	return n, nil
}
func (c *memConn) Write(p []byte) (int, error)     { return len(p), nil }
func (c *memConn) Close() error                    { c.closed = true; return nil }
func (c *memConn) RemoteAddr() net.Addr            { return remoteAddr("192.0.2.1:1234") }
func (c *memConn) SetReadDeadline(time.Time) error { return nil }

type eventLog struct {
	mu  sync.Mutex
	evs []string
	ch  chan string
}

func newEventLog() *eventLog { return &eventLog{ch: make(chan string, 100)} }

func (l *eventLog) SecurityEvent(kind, remote, detail string) {
	l.mu.Lock()
	l.evs = append(l.evs, kind+" "+detail)
	l.mu.Unlock()
	select {
	case l.ch <- kind + " " + detail:
	default:
	}
}

func (l *eventLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.evs...)
}

// wait returns the next event of kind, failing the test after 5 seconds.
func (l *eventLog) wait(t *testing.T, kind string) string {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e := <-l.ch:
			if strings.HasPrefix(e, kind+" ") {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event; have %q", kind, l.all())
		}
	}
}

func TestGuardConnDeliversUpToViolation(t *testing.T) {
	good := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
	bad := "POST /2 HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	ev := newEventLog()
	s := &Server{events: ev}
	mc := &memConn{pieces: [][]byte{[]byte(good + bad)}}
	g := newGuardConn(s, mc, false, true)
	s.open.Add(1)
	buf := make([]byte, 4096)
	n, err := g.Read(buf)
	upTo := good + bad[:strings.Index(bad, "\r\nTransfer")+len("\r\nTransfer-Encoding")]
	if err != nil || string(buf[:n]) != upTo {
		t.Fatalf("first read %q, %v; want %q", buf[:n], err, upTo)
	}
	_, err = g.Read(buf)
	var fe *FramingError
	if !errors.As(err, &fe) || fe.Reason != rsTEandCL {
		t.Fatalf("second read error %v, want %q", err, rsTEandCL)
	}
	if _, err2 := g.Read(buf); err2 != err {
		t.Fatalf("error not sticky: %v", err2)
	}
	// The offending byte first in a read: the read fails at once.
	k := len(upTo) - len(good)
	g2 := newGuardConn(s, &memConn{pieces: [][]byte{[]byte(bad[:k]), []byte(bad[k:])}}, false, true)
	if n, err := g2.Read(buf); err != nil || string(buf[:n]) != bad[:k] {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if n, err := g2.Read(buf); n != 0 || !errors.As(err, &fe) {
		t.Fatalf("read %d, %v; want 0 and a FramingError", n, err)
	}
	if evs := ev.all(); len(evs) != 2 || !strings.HasPrefix(evs[0], KindAmbiguousFraming) {
		t.Fatalf("events %q", evs)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		t.Fatal("FramingError must not be a net.Error (net/http would not answer 400)")
	}
	g.Close()
	g.Close()
	if s.open.Load() != 0 || !mc.closed {
		t.Fatalf("open %d after Close", s.open.Load())
	}
}

func TestGuardConnHoldsAfterUpgrade(t *testing.T) {
	head := "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"
	tunnel := "\x81\x05\nhello\r\nTransfer-Encoding: x\n\n"
	s := &Server{events: newEventLog()}
	g := newGuardConn(s, &memConn{pieces: [][]byte{[]byte(head + tunnel)}}, false, true)
	buf := make([]byte, 4096)
	n, err := g.Read(buf)
	if err != nil || string(buf[:n]) != head {
		t.Fatalf("read %q, %v; want the upgrade head only", buf[:n], err)
	}
	// net/http's background read takes one byte, then the handler hijacks.
	if n, err = g.Read(buf[:1]); n != 1 || err != nil || buf[0] != tunnel[0] {
		t.Fatalf("background read %d %v", n, err)
	}
	g.hijacked()
	got, err := io.ReadAll(g)
	if err != nil || string(got) != tunnel[1:] {
		t.Fatalf("after hijack read %q, %v", got, err)
	}
}

func TestGuardConnUpgradeRefusedStillJudged(t *testing.T) {
	head := "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
	next := "GET / HTTP/1.1\r\nX: a\n\r\n"
	s := &Server{events: newEventLog()}
	g := newGuardConn(s, &memConn{pieces: [][]byte{[]byte(head + next)}}, false, true)
	got, err := io.ReadAll(g)
	if string(got) != head+"GET / HTTP/1.1\r\nX: a" || err == nil {
		t.Fatalf("read %q, %v; want the upgrade request and then a FramingError", got, err)
	}
}

func TestGuardConnRandomReads(t *testing.T) {
	// Every valid stream comes out byte for byte, whatever the read sizes.
	for name, s := range validStreams {
		for _, size := range []int{1, 2, 3, 5, 8, 13, 64, 4096} {
			var pieces [][]byte
			for rest := []byte(s); len(rest) > 0; {
				k := min(size, len(rest))
				pieces = append(pieces, rest[:k])
				rest = rest[k:]
			}
			g := newGuardConn(&Server{events: newEventLog()}, &memConn{pieces: pieces}, false, true)
			got, err := readAllSized(g, size+3)
			if err != nil || !bytes.Equal(got, []byte(s)) {
				t.Fatalf("%s, size %d: %q, %v", name, size, got, err)
			}
		}
	}
}

func readAllSized(r io.Reader, size int) ([]byte, error) {
	var out []byte
	buf := make([]byte, size)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}
