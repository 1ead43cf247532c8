package h1_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/listener/h1"
	"github.com/portcullis/portcullis/internal/testutil"
)

// eofConn is the server end of a net.Pipe that reports io.EOF once the fuzz
// input has been read, as a client that half-closes would: ServeConn then ends
// without waiting for a timeout.
type eofConn struct {
	net.Conn
	left int
}

func (c *eofConn) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, io.EOF
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= n
	return n, err
}

// fuzzHandler is well behaved: whatever the input, every response it starts
// must reach the client well framed. X-Seq numbers the requests it served, so
// that the client knows which responses answer a HEAD.
type fuzzHandler struct {
	mu      sync.Mutex
	methods []string
	tunnel  *string // what the client sent after an upgrade, echoed back
}

func (f *fuzzHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	seq := len(f.methods)
	f.methods = append(f.methods, r.Method)
	f.mu.Unlock()
	h := w.Header()
	h.Set("X-Seq", strconv.Itoa(seq))
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/e"):
		b, err := io.ReadAll(r.Body)
		h.Set("X-Err", fmt.Sprint(err != nil))
		w.Write(b)
	case strings.HasPrefix(p, "/s"):
		for i := 0; i < 5; i++ {
			w.Write(bytes.Repeat([]byte{'s'}, 3000))
			w.(http.Flusher).Flush()
		}
	case strings.HasPrefix(p, "/t"):
		h.Set("Trailer", "X-T")
		io.WriteString(w, "t")
		h.Set("X-T", "v")
		h.Set(http.TrailerPrefix+"X-U", "u")
	case strings.HasPrefix(p, "/h"):
		h.Set("Link", "</x>")
		w.WriteHeader(103)
		io.WriteString(w, "hinted")
	case strings.HasPrefix(p, "/c"):
		h.Set("Content-Length", "3")
		io.WriteString(w, "abc")
	case strings.HasPrefix(p, "/r"):
		b := make([]byte, 7)
		io.ReadFull(r.Body, b)
		io.WriteString(w, "some")
	case strings.HasPrefix(p, "/x"):
		h.Set("Connection", "close")
	case strings.HasPrefix(p, "/u"):
		// An upgrade: the rest of the stream is echoed back as it is.
		h.Set("Upgrade", "echo")
		h.Set("Connection", "Upgrade")
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(brw)
		conn.Write(b)
		s := string(b)
		f.mu.Lock()
		f.tunnel = &s
		f.mu.Unlock()
	case strings.HasPrefix(p, "/d"):
		http.NewResponseController(w).EnableFullDuplex()
		io.WriteString(w, "duplex")
		w.(http.Flusher).Flush()
		io.Copy(w, r.Body)
	default:
		io.WriteString(w, "ok")
	}
}

func FuzzServeConn(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzServeConn; two more here.
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), byte(0))
	f.Add([]byte("POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHEAD /s HTTP/1.1\r\nHost: a\r\n\r\n"), byte(3))
	f.Fuzz(func(t *testing.T, data []byte, chunk byte) {
		logs := &testutil.SyncBuffer{}
		fh := &fuzzHandler{}
		out := serveFuzz(t, data, int(chunk%32), fh, logs)
		if strings.Contains(logs.String(), "level=ERROR") {
			t.Fatalf("server error: %s", logs)
		}
		if err := checkResponses(out, fh.methods, fh.tunnel); err != nil {
			t.Fatalf("%v\ninput: %q\noutput: %q", err, data, out)
		}
		if fh.tunnel != nil && !bytes.HasSuffix(data, []byte(*fh.tunnel)) {
			t.Fatalf("the upgraded stream %q is not the end of the input %q", *fh.tunnel, data)
		}
	})
}

// serveFuzz runs ServeConn over a net.Pipe with data as the client's bytes
// (written in pieces of chunk bytes, 0: at once) and returns all it wrote.
// Every wait is bounded: a hang fails the test.
func serveFuzz(t *testing.T, data []byte, chunk int, h http.Handler, logs io.Writer) []byte {
	cl, sv := net.Pipe()
	deadline := time.Now().Add(5 * time.Second)
	cl.SetDeadline(deadline)
	sv.SetDeadline(deadline)
	o := &h1.Options{
		MaxHeaderBytes: 1024, MaxHeaders: 16, ReadHeaderTimeout: time.Second, IdleTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		h1.ServeConn(&eofConn{Conn: sv, left: len(data)}, h, o)
	}()
	go func() {
		for p := data; len(p) > 0; {
			n := len(p)
			if chunk > 0 && chunk < n {
				n = chunk
			}
			if _, err := cl.Write(p[:n]); err != nil {
				return
			}
			p = p[n:]
		}
	}()
	out, _ := io.ReadAll(cl)
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatalf("ServeConn did not return; input %q", data)
	}
	cl.Close()
	return out
}

// checkResponses checks that out is a well-framed sequence of responses: one
// final response per request the handler served, in order, among which only
// 1xx and responses of the server itself (no X-Seq: OPTIONS *, 417, errors),
// and nothing after the last. A 101 of the handler is the last response: what
// follows is the echo of the upgraded stream (tunnel; nil if the handler could
// not hijack).
func checkResponses(out []byte, methods []string, tunnel *string) error {
	r := bytes.NewReader(out)
	br := bufio.NewReaderSize(r, 64<<10)
	next := 0
	for r.Len()+br.Buffered() > 0 {
		rest := out[len(out)-r.Len()-br.Buffered():]
		end := bytes.Index(rest, []byte("\r\n\r\n"))
		if end < 0 {
			return fmt.Errorf("truncated head %q", rest)
		}
		head := string(rest[:end])
		method, seq := "GET", -1
		if i := strings.Index(head, "\r\nX-Seq: "); i >= 0 {
			v, _, _ := strings.Cut(head[i+9:], "\r\n")
			seq, _ = strconv.Atoi(v)
			if seq < len(methods) {
				method = methods[seq]
			}
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return fmt.Errorf("response head: %v", err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			return fmt.Errorf("response %d body: %v", seq, err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols && seq >= 0 {
			rest := out[len(out)-r.Len()-br.Buffered():]
			want := ""
			if tunnel != nil {
				want = *tunnel
			}
			if string(rest) != want {
				return fmt.Errorf("after the 101: %q, want the echo %q", rest, want)
			}
			if seq != next || seq != len(methods)-1 {
				return fmt.Errorf("101 answers request %d of %d, want the last", seq, len(methods))
			}
			return nil
		}
		if resp.StatusCode/100 == 1 {
			continue
		}
		if seq >= 0 {
			if seq != next {
				return fmt.Errorf("response %d, want %d", seq, next)
			}
			next++
		}
	}
	if next != len(methods) {
		return fmt.Errorf("%d responses for %d requests", next, len(methods))
	}
	return nil
}

// TestFuzzSeeds runs the committed corpus and a few generated request streams
// through the fuzz check without -fuzz, read boundaries varied.
func TestFuzzSeeds(t *testing.T) {
	inputs := []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /s HTTP/1.1\r\nHost: a\r\n\r\nHEAD /t HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhelloGET /h HTTP/1.0\r\n\r\n",
		"POST /d HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /r HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\nX: y\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", 20) + "\r\n",
		"GET /e HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: nope\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /u HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n\x81\x05hello GET / HTTP/1.1\r\n\r\n",
		"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nUpgrade: echo\r\n\r\nabcdef",
	}
	for i, in := range inputs {
		for _, chunk := range []int{0, 1, 7} {
			logs := &testutil.SyncBuffer{}
			fh := &fuzzHandler{}
			out := serveFuzz(t, []byte(in), chunk, fh, logs)
			if err := checkResponses(out, fh.methods, fh.tunnel); err != nil || strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("input %d chunk %d: %v %s\n%q", i, chunk, err, logs, out)
			}
		}
	}
}
