package transport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/transport"
)

// countingServer counts new connections so tests can see reuse.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns
}

func newReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestH1ReusesConnections(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	})
	p := transport.New(s.Listener.Addr().String(), transport.Options{})
	defer p.Close()
	for i := 0; i < 20; i++ {
		resp, err := p.RoundTrip(newReq(t, "GET", s.URL+"/x", nil))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello /x" {
			t.Fatalf("body %q", b)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential requests used %d connections, want 1", n)
	}
}

func TestH1Bodies(t *testing.T) {
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Len", r.Header.Get("Content-Length"))
		w.Header().Set("X-TE", strings.Join(r.TransferEncoding, ","))
		w.Header().Set("Trailer", "X-Sum")
		w.Write(b)
		w.Header().Set("X-Sum", r.Trailer.Get("X-In"))
	})
	p := transport.New(s.Listener.Addr().String(), transport.Options{})
	defer p.Close()
	cases := []struct {
		name            string
		body            io.Reader
		cl              int64
		trailer         http.Header
		wantLen, wantTE string
		wantTrailer     string
	}{
		{name: "content-length", body: strings.NewReader("abc"), cl: 3, wantLen: "3"},
		{name: "chunked", body: io.MultiReader(strings.NewReader("ab"), strings.NewReader("c")), cl: -1, wantTE: "chunked"},
		{name: "trailers", body: strings.NewReader("abc"), cl: 3, trailer: http.Header{"X-In": {"7"}}, wantTE: "chunked", wantTrailer: "7"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newReq(t, "POST", s.URL, c.body)
			r.ContentLength = c.cl
			r.Trailer = c.trailer
			resp, err := p.RoundTrip(r)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "abc" || resp.Header.Get("X-Len") != c.wantLen || resp.Header.Get("X-TE") != c.wantTE {
				t.Fatalf("body %q len %q te %q", b, resp.Header.Get("X-Len"), resp.Header.Get("X-TE"))
			}
			if got := resp.Trailer.Get("X-Sum"); got != c.wantTrailer {
				t.Fatalf("response trailer %q, want %q", got, c.wantTrailer)
			}
		})
	}
}

func TestH1StaleConnectionIsRetried(t *testing.T) {
	// The server closes every connection after one response without saying so.
	var n atomic.Int64
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.WriteString(w, "ok")
		hj, _ := w.(http.Hijacker)
		if c, bw, err := hj.Hijack(); err == nil {
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			bw.Flush()
			c.Close()
		}
	})
	p := transport.New(s.Listener.Addr().String(), transport.Options{})
	defer p.Close()
	for i := 0; i < 3; i++ {
		resp, err := p.RoundTrip(newReq(t, "GET", s.URL, nil))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n.Load() != 3 {
		t.Fatalf("server saw %d requests, want 3", n.Load())
	}
}

func TestH1ConnectError(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	p := transport.New(addr, transport.Options{ConnectTimeout: time.Second})
	_, err := p.RoundTrip(newReq(t, "GET", "http://"+addr, nil))
	var ce *transport.ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want ConnectError", err)
	}
}

func TestH1ConnLimit(t *testing.T) {
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {})
	p := transport.New(s.Listener.Addr().String(), transport.Options{AcquireConn: func() (func(), bool) { return nil, false }})
	if _, err := p.RoundTrip(newReq(t, "GET", s.URL, nil)); !errors.Is(err, transport.ErrConnLimit) {
		t.Fatalf("err = %v, want ErrConnLimit", err)
	}
}

func TestH1CancelUnblocks(t *testing.T) {
	release := make(chan struct{})
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	p := transport.New(s.Listener.Addr().String(), transport.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := p.RoundTrip(newReq(t, "GET", s.URL, nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); done <- err }()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("body read succeeded after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not unblock the body read")
	}
}

func TestH2CTrailers(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "want h2", 400)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "Grpc-Status")
		w.Write(b)
		w.Header().Set("Grpc-Status", "0")
	}))
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Start()
	defer s.Close()
	p := transport.New(s.Listener.Addr().String(), transport.Options{Protocol: transport.H2C})
	defer p.Close()
	resp, err := p.RoundTrip(newReq(t, "POST", s.URL, bytes.NewReader([]byte("frame"))))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "frame" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("status %d body %q trailer %v", resp.StatusCode, b, resp.Trailer)
	}
}

func TestTLSOrigination(t *testing.T) {
	for _, proto := range []string{transport.HTTP1, transport.HTTP2} {
		t.Run(proto, func(t *testing.T) {
			s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, r.Proto)
			}))
			s.EnableHTTP2 = true
			s.StartTLS()
			defer s.Close()
			cfg := &tls.Config{RootCAs: s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "example.com"}
			p := transport.New(s.Listener.Addr().String(), transport.Options{Protocol: proto, TLS: cfg})
			defer p.Close()
			resp, err := p.RoundTrip(newReq(t, "GET", s.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := map[string]string{transport.HTTP1: "HTTP/1.1", transport.HTTP2: "HTTP/2.0"}[proto]
			if string(b) != want {
				t.Fatalf("upstream saw %q, want %q", b, want)
			}
		})
	}
}

func BenchmarkH1RoundTrip(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer s.Close()
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"portcullis", transport.New(s.Listener.Addr().String(), transport.Options{})},
		{"net-http", &http.Transport{MaxIdleConnsPerHost: 64}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r, _ := http.NewRequest("GET", s.URL, nil)
					resp, err := tc.rt.RoundTrip(r)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
