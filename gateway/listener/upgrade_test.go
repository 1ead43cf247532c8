package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
)

// echoUpgrade answers "Upgrade: echo" with 101 and echoes the stream until the
// client half-closes; path /keep hands the connection to a goroutine and
// returns, as a handler may. Other requests get "plain".
func echoUpgrade(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			io.WriteString(w, "plain")
			return
		}
		w.Header().Set("Upgrade", "echo")
		w.Header().Set("Connection", "Upgrade")
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		serve := func() {
			defer c.Close()
			io.Copy(c, brw.Reader)
		}
		if r.URL.Path == "/keep" {
			go serve()
			return
		}
		serve()
	})
}

// dialProto opens a client connection to s: TCP, or TLS offering http/1.1 only
// for HTTPS.
func dialProto(t *testing.T, s *Server, ca *testCA) net.Conn {
	t.Helper()
	if ca == nil {
		return dial(t, s.Addr())
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.Addr().String(), ca.clientTLS("localhost", "http/1.1"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// upgrade sends an upgrade request for path on c and reads the 101.
func upgrade(t *testing.T, c net.Conn, path string) *bufio.Reader {
	t.Helper()
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	return br
}

func echoes(c net.Conn, br *bufio.Reader, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		return err
	}
	if string(got) != msg {
		return errors.New("echo " + string(got))
	}
	return nil
}

// TestHijackedStreamNotJudged: after an upgrade, bytes that would be refused as
// request smuggling pass through the framing guard unjudged, on every protocol
// (h1 serves HTTP and HTTPS/1.1, net/http serves H2C's HTTP/1.1); an upgrade the
// handler does not take leaves the connection HTTP/1, still judged.
func TestHijackedStreamNotJudged(t *testing.T) {
	ca := newTestCA(t)
	for _, tc := range []struct {
		name string
		spec config.ListenerSpec
		ca   *testCA
	}{
		{name: "HTTP", spec: config.ListenerSpec{}},
		{name: "HTTPS", spec: httpsSpec(t, ca), ca: ca},
		{name: "H2C", spec: config.ListenerSpec{Protocol: config.ProtocolH2C}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ev := start(t, tc.spec, echoUpgrade(t))
			c := dialProto(t, s, tc.ca)
			br := upgrade(t, c, "/")
			if err := echoes(c, br, tunnelBytes+smuggle); err != nil {
				t.Fatal(err)
			}
			if evs := ev.all(); len(evs) != 0 {
				t.Fatalf("events %q", evs)
			}

			c2 := dialProto(t, s, tc.ca)
			got := exchange(t, c2, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: other\r\n\r\n"+smuggle)
			if !strings.HasPrefix(got, "HTTP/1.1 200 ") || !strings.Contains(got, "HTTP/1.1 400 ") {
				t.Fatalf("refused upgrade then smuggling: %q", got)
			}
		})
	}
}

// TestTunnelsCountedAndClosedAfterGrace: hijacked connections count towards the
// open connections until they close, also one whose handler returned and kept
// it; a graceful shutdown leaves them working during its grace period and
// closes them when it ends.
func TestTunnelsCountedAndClosedAfterGrace(t *testing.T) {
	s, err := New("t", config.ListenerSpec{Address: "127.0.0.1:0"}, echoUpgrade(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	inHandler := dial(t, s.Addr())
	brIn := upgrade(t, inHandler, "/")
	kept := dial(t, s.Addr())
	brKept := upgrade(t, kept, "/keep")
	for _, tun := range []struct {
		c  net.Conn
		br *bufio.Reader
	}{{inHandler, brIn}, {kept, brKept}} {
		if err := echoes(tun.c, tun.br, "before"); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Stats().OpenConnections; n != 2 {
		t.Fatalf("%d open connections, want the 2 tunnels", n)
	}

	const grace = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	// During the grace period both tunnels still carry bytes.
	for _, tun := range []struct {
		c  net.Conn
		br *bufio.Reader
	}{{inHandler, brIn}, {kept, brKept}} {
		if err := echoes(tun.c, tun.br, "during"); err != nil {
			t.Fatalf("during the grace period: %v", err)
		}
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want the grace period's end", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if d := time.Since(start); d < grace {
		t.Fatalf("Shutdown returned after %v, before the grace period of %v", d, grace)
	}
	for _, br := range []*bufio.Reader{brIn, brKept} {
		if b, err := io.ReadAll(br); err != nil && !isReset(err) || len(b) != 0 {
			t.Fatalf("after the grace period a tunnel read %q, %v; want it closed", b, err)
		}
	}
	eventually(t, "the tunnels to leave the connection count", func() bool { return s.Stats().OpenConnections == 0 })
}
