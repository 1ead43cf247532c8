package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
)

var smuggle = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"

func TestFramingRefusedPlain(t *testing.T) {
	var called atomic.Int32
	s, ev := start(t, config.ListenerSpec{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called.Add(1)
	}))
	cases := map[string]string{
		"te+cl":    smuggle,
		"cl+te":    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"two te":   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"cl text":  "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x4\r\n\r\nabcd",
		"obs-fold": "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
		"bare lf":  "GET / HTTP/1.1\nHost: a\n\n",
		"te 1.0":   "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			got := exchange(t, dial(t, s.Addr()), req)
			if !strings.HasPrefix(got, "HTTP/1.1 400 ") {
				t.Fatalf("response %q, want 400", got)
			}
			ev.wait(t, KindAmbiguousFraming)
		})
	}
	if n := called.Load(); n != 0 {
		t.Fatalf("handler called %d times", n)
	}
}

func TestFramingRefusedTLS(t *testing.T) {
	ca := newTestCA(t)
	s, ev := start(t, httpsSpec(t, ca), echo)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.Addr().String(), ca.clientTLS("localhost", "http/1.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got := exchange(t, c, smuggle)
	if !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Fatalf("response %q, want 400", got)
	}
	if e := ev.wait(t, KindAmbiguousFraming); !strings.Contains(e, rsTEandCL) {
		t.Fatalf("event %q", e)
	}
}

func TestPipelinedValidRequests(t *testing.T) {
	s, ev := start(t, config.ListenerSpec{}, echo)
	c := dial(t, s.Addr())
	body := "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
	req := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
		fmt.Sprintf("POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(body), body) +
		"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5;ext=\"a;b\"\r\nhello\r\n1;x=y\r\n!\r\n0\r\nX-Trailer: 1\r\n\r\n" +
		"GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	got := readResponses(t, bufio.NewReader(c), 4)
	want := []string{"200 OK: GET /1 ", "200 OK: POST /2 " + body, "200 OK: POST /3 hello!", "200 OK: GET /4 "}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("response %d = %q, want %q", i+1, got[i], want[i])
		}
	}
	if evs := ev.all(); len(evs) != 0 {
		t.Fatalf("events %q", evs)
	}
}

func TestPipelinedChunked(t *testing.T) {
	s, _ := start(t, config.ListenerSpec{}, echo)
	c := dial(t, s.Addr())
	req := "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5;ext=\"a;b\"\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\n!\r\n0\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	got := readResponses(t, bufio.NewReader(c), 2)
	if got[0] != "200 OK: POST /a hello" || got[1] != "200 OK: POST /b !" {
		t.Fatalf("responses %q", got)
	}
}

func TestHTTP2OverTLS(t *testing.T) {
	ca := newTestCA(t)
	var sawTLS, sawState, sawCtx atomic.Bool
	s, _ := start(t, httpsSpec(t, ca), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawTLS.Store(r.TLS != nil)
		st := TLSState(r)
		sawState.Store(st != nil && st.HandshakeComplete)
		_, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
		sawCtx.Store(ok)
		io.WriteString(w, r.Proto)
	}))
	for _, tc := range []struct {
		name   string
		protos func(*http.Protocols)
		want   string
		ctx    bool
	}{
		{"h2", func(p *http.Protocols) { p.SetHTTP2(true) }, "HTTP/2.0", false},
		{"http1", func(p *http.Protocols) { p.SetHTTP1(true) }, "HTTP/1.1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p http.Protocols
			tc.protos(&p)
			tr := &http.Transport{TLSClientConfig: ca.clientTLS("localhost"), Protocols: &p}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			res, err := cl.Get("https://" + s.Addr().String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.Proto != tc.want || string(b) != tc.want {
				t.Fatalf("client %s, server %s; want %s", res.Proto, b, tc.want)
			}
			if !sawTLS.Load() || !sawState.Load() {
				t.Fatalf("r.TLS set: %v, TLSState set: %v", sawTLS.Load(), sawState.Load())
			}
			if sawCtx.Load() != tc.ctx {
				t.Fatalf("TLS state in the connection context: %v, want %v", sawCtx.Load(), tc.ctx)
			}
		})
	}
}

func TestH2C(t *testing.T) {
	s, _ := start(t, config.ListenerSpec{Protocol: config.ProtocolH2C}, echo)
	for _, tc := range []struct {
		name string
		set  func(*http.Protocols)
		want string
	}{
		{"prior knowledge", func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) }, "HTTP/2.0"},
		{"http1", func(p *http.Protocols) { p.SetHTTP1(true) }, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p http.Protocols
			tc.set(&p)
			tr := &http.Transport{Protocols: &p}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			// A body with bare LFs and head-like text: h2 frames are not judged.
			res, err := cl.Post("http://"+s.Addr().String()+"/g", "text/plain", strings.NewReader("a\nb\n\nTransfer-Encoding: x\r\n"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.Proto != tc.want || string(b) != "POST /g a\nb\n\nTransfer-Encoding: x\r\n" {
				t.Fatalf("%s %q", res.Proto, b)
			}
		})
	}
}

func TestHeaderLimits(t *testing.T) {
	s, ev := start(t, config.ListenerSpec{Limits: config.ListenerLimits{MaxRequestHeaders: 10, MaxRequestHeaderBytes: 2048}}, echo)
	var many strings.Builder
	for i := range 12 {
		fmt.Fprintf(&many, "X-H%d: v\r\n", i)
	}
	got := exchange(t, dial(t, s.Addr()), "GET / HTTP/1.1\r\nHost: a\r\n"+many.String()+"\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Fatalf("too many fields: %q", got)
	}
	ev.wait(t, KindHeaderCount)

	got = exchange(t, dial(t, s.Addr()), "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("x", 8192)+"\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Fatalf("too many bytes: %.60q", got)
	}

	// Exactly at the limit passes: 9 fields and Host.
	var nine strings.Builder
	for i := range 9 {
		fmt.Fprintf(&nine, "X-H%d: v\r\n", i)
	}
	got = exchange(t, dial(t, s.Addr()), "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"+nine.String()[:len(nine.String())-len("X-H8: v\r\n")]+"\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Fatalf("at the limit: %q", got)
	}
}

func TestHeaderCountHTTP2(t *testing.T) {
	ca := newTestCA(t)
	spec := httpsSpec(t, ca)
	spec.Limits.MaxRequestHeaders = 5
	s, ev := start(t, spec, echo)
	var p http.Protocols
	p.SetHTTP2(true)
	tr := &http.Transport{TLSClientConfig: ca.clientTLS("localhost"), Protocols: &p}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+s.Addr().String()+"/", nil)
	for i := range 8 {
		req.Header.Set(fmt.Sprintf("X-H%d", i), "v")
	}
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge || res.ProtoMajor != 2 {
		t.Fatalf("%s %s", res.Proto, res.Status)
	}
	ev.wait(t, KindHeaderCount)
}

func TestConnectionLimit(t *testing.T) {
	s, ev := start(t, config.ListenerSpec{Limits: config.ListenerLimits{MaxConnections: 2}}, echo)
	keep := func() net.Conn {
		c := dial(t, s.Addr())
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if r := readResponses(t, bufio.NewReader(c), 1); !strings.HasPrefix(r[0], "200") {
			t.Fatal(r)
		}
		return c
	}
	c1, _ := keep(), keep()
	// The third is accepted and closed at once (reset: the dial itself may fail).
	if c3, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second); err == nil {
		c3.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c3.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("third connection was not closed: %v", err)
		}
		c3.Close()
	}
	ev.wait(t, KindConnectionLimit)
	if st := s.Stats(); st.RejectedConnections != 1 || st.OpenConnections != 2 {
		t.Fatalf("stats %+v", st)
	}
	// Closing one makes room again.
	c1.Close()
	eventually(t, "a free slot", func() bool { return s.Stats().OpenConnections == 1 })
	keep()
}

func TestGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	s, err := New("t", config.ListenerSpec{Address: "127.0.0.1:0"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "finished")
	}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		cl := &http.Client{Timeout: 5 * time.Second}
		res, err := cl.Get("http://" + addr + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		got <- result{string(b), err}
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("request did not arrive")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	// New connections are refused once the listener is closed.
	eventually(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned before the request finished: %v", err)
	default:
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request: %q, %v", r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestRebindReusePort(t *testing.T) {
	tag := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	old, _ := start(t, config.ListenerSpec{}, tag("old"))
	addr := old.Addr().String()
	// A changed listener binds the same address while the old one still serves.
	nu, _ := start(t, config.ListenerSpec{Address: addr}, tag("new"))
	get := func() string {
		tr := &http.Transport{DisableKeepAlives: true}
		res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	get()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := old.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if b := get(); b != "new" {
			t.Fatalf("after the old listener drained, served by %q", b)
		}
	}
	_ = nu
}

func TestSlowloris(t *testing.T) {
	s, _ := start(t, config.ListenerSpec{Limits: config.ListenerLimits{ReadHeaderTimeout: config.Duration(300 * time.Millisecond)}}, echo)
	c := dial(t, s.Addr())
	closed := make(chan time.Duration, 1)
	begin := time.Now()
	go func() {
		// The server closes the connection; the first write or read after that fails.
		b := make([]byte, 1)
		c.Read(b)
		closed <- time.Since(begin)
	}()
	head := "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + strings.Repeat("x", 200)
	for i := 0; i < len(head); i++ {
		if _, err := c.Write([]byte{head[i]}); err != nil {
			break
		}
		select {
		case d := <-closed:
			if d > 2*time.Second {
				t.Fatalf("closed after %v", d)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("a client trickling its head held the connection")
}

func TestSlowTLSHandshake(t *testing.T) {
	ca := newTestCA(t)
	spec := httpsSpec(t, ca)
	spec.Limits.ReadHeaderTimeout = config.Duration(300 * time.Millisecond)
	s, ev := start(t, spec, echo)
	// A client that connects and never sends a ClientHello...
	slow := dial(t, s.Addr())
	// ...does not hold up others,
	tr := &http.Transport{TLSClientConfig: ca.clientTLS("localhost")}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + s.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	// ...and is closed after the handshake deadline.
	if _, err := slow.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("slow handshake still open: %v", err)
	}
	ev.wait(t, KindTLSHandshake)
	eventually(t, "the slow connection to be released", func() bool { return s.Stats().OpenConnections <= 1 })
}

func TestIdleTimeout(t *testing.T) {
	s, _ := start(t, config.ListenerSpec{Limits: config.ListenerLimits{IdleTimeout: config.Duration(200 * time.Millisecond)}}, echo)
	c := dial(t, s.Addr())
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	readResponses(t, br, 1)
	begin := time.Now()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("idle connection got data")
	} else if d := time.Since(begin); d > 3*time.Second {
		t.Fatalf("idle connection closed after %v: %v", d, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

const tunnelBytes = "Transfer-Encoding: x\nContent-Length: y\n\n\r\x00"

func TestChunkFramingRefusedMidBody(t *testing.T) {
	// The violation is in the body: the handler's body read fails with the
	// FramingError, after the bytes before it.
	bodyErr := make(chan error, 1)
	s, ev := start(t, config.ListenerSpec{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		bodyErr <- err
		http.Error(w, string(b), http.StatusBadRequest)
	}))
	got := exchange(t, dial(t, s.Addr()), "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcGET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 400 ") || !strings.Contains(got, "abc") || strings.Contains(got, "200 OK") {
		t.Fatalf("%q", got)
	}
	var fe *FramingError
	if err := <-bodyErr; !errors.As(err, &fe) || fe.Reason != rsChunkEnd {
		t.Fatalf("body error %v", err)
	}
	ev.wait(t, KindAmbiguousFraming)
}
