package transport_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/transport"
)

// TestH1Upgrade: a 101 turns the response body into the connection, starting
// with the bytes the upstream sent right behind its 101; the request's context
// no longer applies; half-closing reaches the upstream; the connection's place
// under AcquireConn is held until Close. Over clear text and TLS.
func TestH1Upgrade(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := map[bool]string{false: "clear", true: "TLS"}[useTLS]
		t.Run(name, func(t *testing.T) {
			upstreamDone := make(chan struct{})
			s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(upstreamDone)
				if r.Header.Get("Upgrade") != "echo" || r.Header.Get("Connection") != "Upgrade" {
					http.Error(w, "not an upgrade", http.StatusBadRequest)
					return
				}
				c, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				// The head and the first bytes of the new protocol in one write.
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello")
				io.Copy(c, brw) // until the client half-closes
			}))
			var cfg *tls.Config
			if useTLS {
				s.StartTLS()
				cfg = &tls.Config{RootCAs: s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "example.com"}
			} else {
				s.Start()
			}
			defer s.Close()
			var conns atomic.Int64
			p := transport.New(s.Listener.Addr().String(), transport.Options{TLS: cfg, AcquireConn: func() (func(), bool) {
				conns.Add(1)
				return func() { conns.Add(-1) }, true
			}})
			defer p.Close()

			ctx, cancel := context.WithCancel(context.Background())
			req := newReq(t, "GET", s.URL+"/ws", nil).WithContext(ctx)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "echo")
			resp, err := p.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			cancel() // the handshake is over: this must not cut the tunnel
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", resp.StatusCode)
			}
			rw, ok := resp.Body.(io.ReadWriteCloser)
			if !ok {
				t.Fatalf("body %T is not an io.ReadWriteCloser", resp.Body)
			}
			first := make([]byte, 5)
			if _, err := io.ReadFull(rw, first); err != nil || string(first) != "hello" {
				t.Fatalf("bytes behind the 101: %q, %v", first, err)
			}
			io.WriteString(rw, "ping")
			echo := make([]byte, 4)
			if _, err := io.ReadFull(rw, echo); err != nil || string(echo) != "ping" {
				t.Fatalf("echo %q, %v", echo, err)
			}
			if n := conns.Load(); n != 1 {
				t.Fatalf("%d connections counted during the tunnel, want 1", n)
			}
			if err := rw.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-upstreamDone:
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream did not see the half-close")
			}
			if rest, err := io.ReadAll(rw); err != nil || len(rest) != 0 {
				t.Fatalf("after the upstream closed: %q, %v", rest, err)
			}
			rw.Close()
			rw.Close() // idempotent: released once
			if n := conns.Load(); n != 0 {
				t.Fatalf("%d connections counted after Close, want 0", n)
			}
		})
	}
}
