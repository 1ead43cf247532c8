package proxy

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection (which, unlike
// net.Pipe, can be half-closed).
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var s net.Conn
	select {
	case s = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("accept timed out")
	}
	if s == nil {
		t.Fatal("accept failed")
	}
	for _, x := range []net.Conn{c, s} {
		x.SetDeadline(time.Now().Add(10 * time.Second))
		t.Cleanup(func() { x.Close() })
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// tunnelUnderTest runs a tunnel between two TCP pairs: client <-> (gw client
// side | tunnel | gw upstream side) <-> upstream. It returns the outer ends and
// a channel with the tunnel's result.
func tunnelUnderTest(t *testing.T, idle, grace time.Duration, pre string) (client, upstream *net.TCPConn, done chan tunnelResult) {
	client, gwClient := tcpPair(t)
	gwUpstream, upstream := tcpPair(t)
	tn := &tunnel{client: gwClient, upstream: gwUpstream, idle: idle, grace: grace}
	done = make(chan tunnelResult, 1)
	go func() { done <- tn.run(io.MultiReader(bytes.NewReader([]byte(pre)), gwClient)) }()
	return client, upstream, done
}

func waitTunnel(t *testing.T, done chan tunnelResult, within time.Duration) tunnelResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(within):
		t.Fatalf("the tunnel did not end within %v", within)
		return tunnelResult{}
	}
}

// TestTunnelHalfClose: a client that half-closes still gets the upstream's
// last bytes; the upstream reads everything the client sent (the bytes the
// server had buffered first), then the end; when the upstream closes too, the
// tunnel ends at once, with the bytes each way counted.
func TestTunnelHalfClose(t *testing.T) {
	client, upstream, done := tunnelUnderTest(t, time.Minute, time.Minute, "early ")
	io.WriteString(client, "request")
	client.CloseWrite()
	got, err := io.ReadAll(upstream)
	if err != nil || string(got) != "early request" {
		t.Fatalf("upstream read %q, %v", got, err)
	}
	io.WriteString(upstream, "last words")
	upstream.Close()
	back, err := io.ReadAll(client)
	if err != nil || string(back) != "last words" {
		t.Fatalf("client read %q, %v", back, err)
	}
	r := waitTunnel(t, done, 5*time.Second)
	if r.fromClient != int64(len("early request")) || r.toClient != int64(len("last words")) || r.idleClosed {
		t.Fatalf("result %+v", r)
	}
}

// TestTunnelHalfCloseGrace: after one side ended its stream, the other gets
// the grace period to finish, then both are closed.
func TestTunnelHalfCloseGrace(t *testing.T) {
	const grace = 200 * time.Millisecond
	client, upstream, done := tunnelUnderTest(t, time.Minute, grace, "")
	start := time.Now()
	upstream.CloseWrite() // and never closes
	if b, err := io.ReadAll(client); err != nil || len(b) != 0 {
		t.Fatalf("client read %q, %v; want the end of the stream", b, err)
	}
	waitTunnel(t, done, 5*time.Second)
	if d := time.Since(start); d < grace {
		t.Fatalf("ended after %v, before the grace period", d)
	}
	// The client side is closed: the upstream reads the end.
	if b, err := io.ReadAll(upstream); err != nil || len(b) != 0 {
		t.Fatalf("upstream read %q, %v after the grace period", b, err)
	}
}

// TestTunnelIdle: traffic either way refreshes the idle timeout; silence for
// it closes both sides and says so.
func TestTunnelIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	client, upstream, done := tunnelUnderTest(t, idle, time.Minute, "")
	buf := make([]byte, 4)
	for i := range 6 { // 6 x 100 ms: twice the timeout, never quiet for it
		time.Sleep(idle / 3)
		from, to := client, upstream
		if i%2 == 1 {
			from, to = upstream, client
		}
		io.WriteString(from, "ping")
		if _, err := io.ReadFull(to, buf); err != nil {
			t.Fatalf("exchange %d: %v (closed while traffic flowed)", i, err)
		}
	}
	quiet := time.Now()
	r := waitTunnel(t, done, 5*time.Second)
	if d := time.Since(quiet); d < idle || !r.idleClosed {
		t.Fatalf("ended after %v of silence (idle timeout %v), result %+v", d, idle, r)
	}
	for _, c := range []*net.TCPConn{client, upstream} {
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Fatalf("after the idle timeout: %q, %v", b, err)
		}
	}
}

// TestTunnelResetEndsBoth: a side that fails (reset) closes the other at once.
func TestTunnelResetEndsBoth(t *testing.T) {
	client, upstream, done := tunnelUnderTest(t, time.Minute, time.Minute, "")
	client.SetLinger(0)
	client.Close() // RST
	waitTunnel(t, done, 5*time.Second)
	if b, err := io.ReadAll(upstream); err != nil || len(b) != 0 {
		t.Fatalf("upstream after the client's reset: %q, %v", b, err)
	}
}
