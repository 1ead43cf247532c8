package h1_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/listener/h1"
	"github.com/portcullis/portcullis/internal/testutil"
)

// countingConn counts the calls a server makes on its connection.
type countingConn struct {
	net.Conn
	writes, readDeadlines atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func (c *countingConn) SetReadDeadline(t time.Time) error {
	c.readDeadlines.Add(1)
	return c.Conn.SetReadDeadline(t)
}

// serveOne runs ServeConn on the server end of a fresh loopback connection and
// returns the client end; ServeConn's return is waited for at cleanup.
func serveOne(t *testing.T, h http.Handler, o *h1.Options, wrap func(net.Conn) net.Conn) net.Conn {
	t.Helper()
	ln := listen(t)
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		sc = wrap(sc)
	}
	done := make(chan struct{})
	go func() { defer close(done); h1.ServeConn(sc, h, o) }()
	t.Cleanup(func() {
		cl.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("ServeConn did not return")
		}
	})
	cl.SetDeadline(time.Now().Add(10 * time.Second))
	return cl
}

func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

func TestOneWriteAndOneDeadlinePerRequest(t *testing.T) {
	body := strings.Repeat("x", 1024)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-A", "b")
		io.WriteString(w, body)
	})
	var cc *countingConn
	cl := serveOne(t, h, &h1.Options{ReadHeaderTimeout: time.Second, IdleTimeout: time.Second},
		func(c net.Conn) net.Conn { cc = &countingConn{Conn: c}; return cc })
	br := bufio.NewReader(cl)
	const n = 20
	for i := 0; i < n; i++ {
		io.WriteString(cl, get("/"))
		if _, b := readResp(t, br, "GET"); b != body {
			t.Fatalf("body %q", b)
		}
	}
	// One write per response (head and body together), and one read deadline
	// per request: the idle deadline after each response, and the first
	// request's read-header deadline at the start.
	if w := cc.writes.Load(); w != n {
		t.Errorf("%d writes for %d responses", w, n)
	}
	// The idle deadline after the last response is set once it has been
	// sent: give the server a moment to get there.
	for end := time.Now().Add(time.Second); cc.readDeadlines.Load() < n+1 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	if d := cc.readDeadlines.Load(); d != n+1 {
		t.Errorf("%d SetReadDeadline calls for %d requests", d, n)
	}
}

func TestHeadLimitIsExact(t *testing.T) {
	const limit = 1000
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	s := startH1(t, h, limits{maxHeaderBytes: limit}, nil)
	head := func(size int) string {
		base := "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: \r\n\r\n"
		return strings.Replace(base, "X-Pad: ", "X-Pad: "+strings.Repeat("p", size-len(base)), 1)
	}
	for _, tc := range []struct {
		size, want int
	}{{limit, 200}, {limit + 1, 431}, {3 * limit, 431}} {
		o := exchange(t, s.addr, one(head(tc.size), "GET"), false)
		if len(o.Resps) != 1 || o.Resps[0].Status != tc.want {
			t.Errorf("head of %d bytes: %s, want %d", tc.size, o, tc.want)
		}
	}
	// Pipelined heads: the limit is per head, whatever is already buffered.
	o := exchange(t, s.addr, []step{{send: head(limit) + head(limit) + head(limit+1), methods: []string{"GET", "GET", "GET"}}}, false)
	if len(o.Resps) != 3 || o.Resps[0].Status != 200 || o.Resps[1].Status != 200 || o.Resps[2].Status != 431 {
		t.Errorf("pipelined heads at the limit: %s", o)
	}
}

func TestHeaderCount(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	s := startH1(t, h, limits{maxHeaders: 4}, nil)
	for _, tc := range []struct {
		name, head string
		want       int
	}{
		{"at the limit", "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n", 200},
		{"obs-fold is one field", "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n more\r\nB: 2\r\nC: 3\r\n\r\n", 200},
		{"Host and Transfer-Encoding count", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n0\r\n\r\n", 431},
		{"one over", "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431},
	} {
		o := exchange(t, s.addr, one(tc.head, "GET"), true)
		if len(o.Resps) != 1 || o.Resps[0].Status != tc.want || o.Closed != (tc.want != 200) {
			t.Errorf("%s: %s, want %d", tc.name, o, tc.want)
		}
	}
	if ev := s.events.list(); len(ev) != 2 || ev[0] != h1.KindTooManyHeaders {
		t.Errorf("events %v", ev)
	}
}

func TestOnErrorKinds(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, tc := range []struct {
		req  string
		kind string
	}{
		{"GARBAGE\r\n\r\n", h1.KindBadRequest},
		{"GET / HTTP/1.1\r\n\r\n", h1.KindBadRequest},
		{get("/", "X-Big: "+strings.Repeat("a", 5000)+"\r\n"), h1.KindHeaderTooLarge},
		{get("/", strings.Repeat("A: b\r\n", 30)), h1.KindTooManyHeaders},
		{"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: br\r\n\r\n", h1.KindUnsupportedTE},
		{"GET / HTTP/2.0\r\nHost: h\r\n\r\n", h1.KindUnsupportedVer},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", h1.KindUnsupportedVer},
		{"POST / HTTP/1.1\r\nHost: h\r\nExpect: x\r\nContent-Length: 1\r\n\r\na", h1.KindExpectation},
	} {
		s := startH1(t, h, defaultLimits, nil)
		exchange(t, s.addr, one(tc.req, "GET"), false)
		if ev := s.events.list(); len(ev) != 1 || ev[0] != tc.kind {
			t.Errorf("%.30q: events %v, want %s", tc.req, ev, tc.kind)
		}
	}
}

func TestClientGoneCancelsContext(t *testing.T) {
	canceled := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for i := 0; i < 10000; i++ {
			if _, err := w.Write(chunk); err != nil {
				break
			}
		}
		canceled <- r.Context().Err()
	})
	cl := serveOne(t, h, nil, nil)
	io.WriteString(cl, get("/"))
	bufio.NewReader(cl).Peek(100)
	cl.Close()
	select {
	case err := <-canceled:
		if err != context.Canceled {
			t.Errorf("context: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler still writing to a closed connection")
	}
}

func TestBodyReadFailureCancelsContext(t *testing.T) {
	got := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err == nil {
			t.Error("body read succeeded")
		}
		got <- r.Context().Err()
	})
	cl := serveOne(t, h, nil, nil)
	io.WriteString(cl, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc")
	time.Sleep(50 * time.Millisecond)
	cl.Close()
	select {
	case err := <-got:
		if err != context.Canceled {
			t.Errorf("context: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler blocked")
	}
}

func TestPanicLogged(t *testing.T) {
	var logs testutil.SyncBuffer
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	cl := serveOne(t, h, &h1.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nil)
	io.WriteString(cl, get("/"))
	if b, ok := waitClosed(cl, 3*time.Second); !ok || b != "" {
		t.Fatalf("closed=%v, got %q", ok, b)
	}
	time.Sleep(50 * time.Millisecond)
	if l := logs.String(); !strings.Contains(l, "panic=boom") || !strings.Contains(l, "h1_test.TestPanicLogged") {
		t.Errorf("log: %s", l)
	}
}

// Behaviour that differs from net/http on purpose (see README.md).
func TestDeliberateDifferences(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/3k":
			io.WriteString(w, strings.Repeat("x", 3000)) // net/http: chunked above 2 KiB
		case "/103":
			w.WriteHeader(103)
			io.WriteString(w, "ok")
		case "":
			io.WriteString(w, "no tunnel") // CONNECT example.com:443

		}
	})
	s := startH1(t, h, defaultLimits, nil)
	o := exchange(t, s.addr, one(get("/3k"), "GET"), true)
	if r := o.Resps[0]; r.Framing != "length 3000" || o.Closed {
		t.Errorf("3 KiB response: %s", o)
	}
	o = exchange(t, s.addr, one("GET /103 HTTP/1.0\r\n\r\n", "GET"), false)
	if len(o.Resps) != 1 || o.Resps[0].Status != 200 {
		t.Errorf("1xx to an HTTP/1.0 client: %s", o)
	}
	o = exchange(t, s.addr, one("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "CONNECT"), true)
	if len(o.Resps) != 1 || o.Resps[0].Body != "no tunnel" || !o.Closed {
		t.Errorf("CONNECT: %s", o)
	}
	o = exchange(t, s.addr, one("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "GET"), true)
	if len(o.Resps) != 1 || o.Resps[0].Status != 505 || !o.Closed {
		t.Errorf("HTTP/2 preface: %s", o)
	}
}

func TestResponseWriterInterfaces(t *testing.T) {
	leaked := make(chan http.ResponseWriter, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(http.Hijacker); !ok {
			t.Error("ResponseWriter is not a Hijacker") // hijack_test.go tests what it does
		}
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
			t.Errorf("SetWriteDeadline: %v", err)
		}
		if err := rc.EnableFullDuplex(); err != nil {
			t.Errorf("EnableFullDuplex: %v", err)
		}
		if _, ok := w.(io.StringWriter); !ok {
			t.Error("no WriteString")
		}
		io.WriteString(w, "x")
		leaked <- w
	})
	cl := serveOne(t, h, nil, nil)
	io.WriteString(cl, get("/"))
	readResp(t, bufio.NewReader(cl), "GET")
	w := <-leaked
	if _, err := w.Write([]byte("late")); err == nil {
		t.Error("Write after the handler returned succeeded")
	}
	w.WriteHeader(200)
	w.(http.Flusher).Flush()
}

func TestFullDuplex(t *testing.T) {
	// The handler answers before it reads the body, then echoes the body as
	// it arrives: the client sends its body only after the first bytes.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		io.WriteString(w, "ready\n")
		w.(http.Flusher).Flush()
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			fmt.Fprintf(w, "echo %s\n", sc.Text())
			w.(http.Flusher).Flush()
		}
	})
	cl := serveOne(t, h, nil, nil)
	io.WriteString(cl, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
	br := bufio.NewReader(cl)
	resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	body := bufio.NewReader(resp.Body)
	if l, _ := body.ReadString('\n'); l != "ready\n" {
		t.Fatalf("first line %q", l)
	}
	for i := 0; i < 3; i++ {
		fmt.Fprintf(cl, "2\r\n%d\n\r\n", i)
		if l, _ := body.ReadString('\n'); l != fmt.Sprintf("echo %d\n", i) {
			t.Fatalf("line %q", l)
		}
	}
	io.WriteString(cl, "0\r\n\r\n")
	if rest, err := io.ReadAll(body); err != nil || len(rest) != 0 {
		t.Fatalf("rest %q %v", rest, err)
	}
	io.WriteString(cl, get("/"))
	if resp, _ := readResp(t, br, "GET"); resp.StatusCode != 200 {
		t.Fatal("connection not reusable after full duplex")
	}
}

func TestUserReadDeadline(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := io.ReadAll(r.Body)
		var ne net.Error
		fmt.Fprintf(w, "timeout=%v", errors.As(err, &ne) && ne.Timeout())
	})
	cl := serveOne(t, h, nil, nil)
	io.WriteString(cl, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
	if _, b := readResp(t, bufio.NewReader(cl), "POST"); b != "timeout=true" {
		t.Errorf("body %q", b)
	}
}

type stateConn struct {
	net.Conn
	st tls.ConnectionState
}

func (c stateConn) ConnectionState() tls.ConnectionState { return c.st }

func TestContextAndConnInfo(t *testing.T) {
	type key struct{}
	base, cancelBase := context.WithCancel(context.WithValue(context.Background(), key{}, "base"))
	defer cancelBase()
	var connCtxCalls atomic.Int64
	got := make(chan string, 2)
	var reqCtx context.Context
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqCtx = r.Context()
		got <- fmt.Sprintf("base=%v conn=%v local=%v tls=%v remote=%v", r.Context().Value(key{}),
			r.Context().Value("conn"), r.Context().Value(http.LocalAddrContextKey) != nil,
			r.TLS != nil && r.TLS.ServerName == "sni.example", r.RemoteAddr != "")
	})
	o := &h1.Options{BaseContext: base, ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		connCtxCalls.Add(1)
		return context.WithValue(ctx, "conn", "yes")
	}}
	cl := serveOne(t, h, o, func(c net.Conn) net.Conn {
		return stateConn{c, tls.ConnectionState{ServerName: "sni.example", HandshakeComplete: true}}
	})
	br := bufio.NewReader(cl)
	for i := 0; i < 2; i++ {
		io.WriteString(cl, get("/"))
		readResp(t, br, "GET")
		if s := <-got; s != "base=base conn=yes local=true tls=true remote=true" {
			t.Errorf("request %d: %s", i, s)
		}
		if reqCtx.Err() == nil {
			t.Error("request context not canceled after the handler returned")
		}
	}
	if n := connCtxCalls.Load(); n != 1 {
		t.Errorf("ConnContext called %d times", n)
	}
}

func TestTLSConn(t *testing.T) {
	ts := httptest.NewTLSServer(http.NotFoundHandler()) // for its test certificate
	cert := ts.TLS.Clone()
	ts.Close()
	ln := listen(t)
	defer ln.Close()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls=%v version=%x", r.TLS != nil && r.TLS.HandshakeComplete, r.TLS.Version)
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		h1.ServeConn(tls.Server(c, cert), h, &h1.Options{ReadHeaderTimeout: 2 * time.Second})
	}()
	cl, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	cl.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(cl, get("/", "Connection: close\r\n"))
	if _, b := readResp(t, bufio.NewReader(cl), "GET"); b != "tls=true version=304" {
		t.Errorf("body %q", b)
	}
	cl.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return")
	}
}

// TestRefusals pins what the refusal mapping relies on in the standard
// library: http.ReadRequest's error for an unknown transfer coding.
func TestRefusals(t *testing.T) {
	for _, te := range []string{"gzip", "chunked\r\nTransfer-Encoding: chunked"} {
		_, err := http.ReadRequest(bufio.NewReader(strings.NewReader(
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " + te + "\r\n\r\n")))
		if err == nil || !(strings.HasPrefix(err.Error(), "unsupported transfer encoding") ||
			strings.HasPrefix(err.Error(), "too many transfer encodings")) {
			t.Errorf("Transfer-Encoding %q: %v", te, err)
		}
	}
}

// A handler that returns while one of its goroutines is blocked reading the
// body (which net/http forbids) must not hang the connection: the response
// goes out, the connection closes, the read fails.
func TestLeakedBodyReader(t *testing.T) {
	readErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() {
			_, err := io.ReadAll(r.Body)
			readErr <- err
		}()
		time.Sleep(50 * time.Millisecond) // the goroutine is now waiting on the client
		io.WriteString(w, "done")
	})
	cl := serveOne(t, h, nil, nil)
	io.WriteString(cl, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc")
	br := bufio.NewReader(cl)
	resp, b := readResp(t, br, "POST")
	if b != "done" || !resp.Close {
		t.Errorf("body %q close %v", b, resp.Close)
	}
	if _, ok := waitClosed(cl, 3*time.Second); !ok {
		t.Error("connection not closed")
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Error("leaked read succeeded")
		}
	case <-time.After(3 * time.Second):
		t.Error("leaked read still blocked")
	}
}

func TestCopyIntoResponse(t *testing.T) {
	big := strings.Repeat("0123456789", 10000)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// io.LimitReader has no WriteTo: io.Copy uses the response's ReadFrom.
		io.Copy(w, io.LimitReader(strings.NewReader(big), int64(len(big))))
	})
	cl := serveOne(t, h, nil, nil)
	br := bufio.NewReader(cl)
	for _, m := range []string{"GET", "HEAD", "GET"} {
		io.WriteString(cl, m+" / HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, b := readResp(t, br, m)
		want := big
		if m == "HEAD" {
			want = ""
		}
		if b != want || resp.StatusCode != 200 {
			t.Fatalf("%s: %d, %d bytes", m, resp.StatusCode, len(b))
		}
	}
}
