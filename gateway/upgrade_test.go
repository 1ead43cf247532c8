package gateway_test

import (
	"bufio"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway"
)

// End-to-end WebSocket tests: a real client and a real WebSocket server
// (websocket_test.go) on loopback, the gateway between them.

// wsSetup describes one gateway for the upgrade tests.
type wsSetup struct {
	https       bool   // HTTPS listener (else HTTP)
	upstreamTLS bool   // the cluster originates TLS
	breaker     string // circuitBreaker of the cluster, YAML flow map
	idle        string // forward.upgradeIdleTimeout
	grace       time.Duration
}

type wsGateway struct {
	g         *gateway.Gateway
	addr      string
	clientTLS *tls.Config
	up        *wsUpstream
	logs      *lockedBuffer
	shutdown  bool
}

// startWSGateway runs a WebSocket upstream and a gateway in front of it. The
// route's rule for /plain/ forwards without upgrades; every other path may
// upgrade to websocket.
func startWSGateway(t *testing.T, s wsSetup) *wsGateway {
	t.Helper()
	w := &wsGateway{up: startWSUpstream(t, s.upstreamTLS), logs: &lockedBuffer{}}
	dir := t.TempDir()
	listener := listenerYAML
	if s.https {
		certFile, keyFile, pool := makeCert(t, dir)
		listener = header + `kind: Listener
metadata: {name: pub}
spec:
  address: 127.0.0.1:0
  protocol: HTTPS
  tls:
    certificates: [{certFile: "` + certFile + `", keyFile: "` + keyFile + `"}]
`
		// http/1.1 only: an h2 client cannot upgrade.
		w.clientTLS = &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}}
	}
	cluster := fmt.Sprintf("---\n%skind: Cluster\nmetadata: {name: ws}\nspec:\n  endpoints: [{address: %s}]\n", header, w.up.addr)
	if s.upstreamTLS {
		caFile := filepath.Join(dir, "upstream-ca.pem")
		if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.up.srv.Certificate().Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
		cluster += `  tls: {caFile: "` + caFile + `", serverName: example.com}` + "\n"
	}
	if s.breaker != "" {
		cluster += "  circuitBreaker: " + s.breaker + "\n"
	}
	idle := ""
	if s.idle != "" {
		idle = ", upgradeIdleTimeout: " + s.idle
	}
	cfg := listener + cluster + `---
` + header + `kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - match: {path: {prefix: /plain/}}
      forward: {backends: [{cluster: ws}]}
    - forward: {backends: [{cluster: ws}], upgrades: [WebSocket]` + idle + `}
---
` + header + `kind: Telemetry
metadata: {name: t}
spec: {accessLog: all}
`
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	grace := s.grace
	if grace == 0 {
		grace = 5 * time.Second
	}
	g, err := gateway.New(gateway.Options{Role: gateway.RoleIngress, ConfigPaths: []string{path}, AdminAddr: "127.0.0.1:0",
		PollInterval: -1, ShutdownGrace: grace, Logger: slog.New(slog.NewJSONHandler(w.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	w.g, w.addr = g, g.ListenerAddr("default/pub")
	t.Cleanup(func() {
		if !w.shutdown {
			g.Shutdown()
		}
	})
	return w
}

// metrics returns the lines of the admin /metrics page that contain every
// one of subs.
func (w *wsGateway) metrics(t *testing.T, subs ...string) []string {
	t.Helper()
	_, body := get(t, nil, mustReq(t, "GET", "http://"+w.g.AdminAddr()+"/metrics", nil))
	var out []string
lines:
	for _, l := range strings.Split(string(body), "\n") {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue lines
			}
		}
		out = append(out, l)
	}
	return out
}

// waitFor polls cond every 10 ms for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// accessRecord waits for the access record of a request with this status.
func (w *wsGateway) accessRecord(t *testing.T, status int) map[string]any {
	t.Helper()
	var rec map[string]any
	waitFor(t, fmt.Sprintf("an access record with status %d", status), func() bool {
		for _, r := range w.logs.records(t) {
			if r["status"] == float64(status) {
				rec = r
				return true
			}
		}
		return false
	})
	return rec
}

// TestWebSocketEcho: a WebSocket handshake and messages both ways through an
// HTTP listener to a clear-text upstream, and through an HTTPS listener to a
// TLS upstream. The upstream sees the handshake fields and X-Forwarded-For; the
// 101 is counted when the tunnel ends, with its bytes and life, in the access
// log and the request metrics; the open tunnel is a gauge meanwhile.
func TestWebSocketEcho(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    wsSetup
	}{
		{"HTTP listener, clear-text upstream", wsSetup{}},
		{"HTTPS listener, TLS upstream", wsSetup{https: true, upstreamTLS: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWSGateway(t, tc.s)
			c, resp := wsDial(t, w.addr, w.clientTLS, "/chat?room=1")
			if c == nil {
				t.Fatalf("handshake answered %d", resp.StatusCode)
			}
			if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "chat" {
				t.Errorf("Sec-WebSocket-Protocol %q: the upstream's answer was not relayed", p)
			}
			seen := <-w.up.headers
			if seen.Get("Sec-WebSocket-Protocol") != "chat" || seen.Get("X-Forwarded-For") != "127.0.0.1" || seen.Get("Upgrade") != "websocket" {
				t.Errorf("the upstream saw %v", seen)
			}
			opened := time.Now()
			if got := c.recv(t); got != "welcome" {
				t.Fatalf("first message %q, want the upstream's welcome", got)
			}
			c.roundTrip(t, "hello")
			c.roundTrip(t, strings.Repeat("large ", 20000)) // 120 KB: several reads each way
			if g := w.metrics(t, "portcullis_upstream_tunnels_open", `cluster="default/ws"`); len(g) != 1 || !strings.HasSuffix(g[0], " 1") {
				t.Errorf("tunnel gauge while open: %q", g)
			}
			time.Sleep(50 * time.Millisecond) // so that the recorded life is measurably more than the handshake
			wsWrite(c.c, opClose, []byte{0x03, 0xe8}, true)
			if op, _, _, err := wsRead(c.br); err != nil || op != opClose {
				t.Fatalf("close handshake: opcode %d, %v", op, err)
			}
			if !c.closed(5 * time.Second) {
				t.Fatal("the gateway did not pass the upstream's close on")
			}
			c.c.Close() // as a client does once the server has closed (RFC 6455 §7.1.1)
			life := time.Since(opened)

			rec := w.accessRecord(t, 101)
			if rec["path"] != "/chat?room=1" || rec["route"] != "default/r#1" || rec["reason"] != "" {
				t.Errorf("access record %v", rec)
			}
			// 120 KB each way plus the frames' headers; the welcome and "echo: " prefixes on the way back.
			in, out := rec["bytes_in"].(float64), rec["bytes"].(float64)
			if in < 120000 || in > 121000 || out < in {
				t.Errorf("access record bytes_in %v, bytes %v", in, out)
			}
			if d := rec["duration_ms"].(float64); d < 50 || d > float64(life.Milliseconds())+1000 {
				t.Errorf("access record duration %vms, tunnel life about %v", d, life)
			}
			if m := w.metrics(t, "portcullis_requests_total{", `code="101"`, `route="default/r#1"`); len(m) != 1 || !strings.HasSuffix(m[0], " 1") {
				t.Errorf("requests_total for 101: %q", m)
			}
			if g := w.metrics(t, "portcullis_upstream_tunnels_open", `cluster="default/ws"`); len(g) != 1 || !strings.HasSuffix(g[0], " 0") {
				t.Errorf("tunnel gauge after the close: %q", g)
			}
		})
	}
}

// TestUpgradeNotAllowed: a rule without upgrades forwards a WebSocket
// handshake as a plain request (the upstream sees no Upgrade field) and the
// client gets the upstream's normal answer; so does a rule with upgrades for a
// protocol it does not list. An upstream answering 101 to a plain request
// gets the client a 502.
func TestUpgradeNotAllowed(t *testing.T) {
	w := startWSGateway(t, wsSetup{})
	c, resp := wsDial(t, w.addr, nil, "/plain/chat")
	if c != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a rule without upgrades answered %d", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != `plain request, Upgrade="" Connection=""` {
		t.Errorf("the upstream saw %s", body)
	}

	conn := dialRaw(t, w.addr)
	fmt.Fprintf(conn, "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c, foo/2\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != `plain request, Upgrade="" Connection=""` {
		t.Errorf("an upgrade to protocols not listed: %d %s", resp.StatusCode, body)
	}

	// An upstream that switches protocols unasked is a bad gateway.
	_, resp = wsDial(t, w.addr, nil, "/plain/rogue")
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "upstream_bad_upgrade") {
		t.Errorf("a 101 to a plain request: %d %s", resp.StatusCode, body)
	}
}

// TestUpgradeRefusedByUpstream: an upstream that refuses the handshake (403)
// is relayed as it is, and the connection stays usable for the next request.
func TestUpgradeRefusedByUpstream(t *testing.T) {
	w := startWSGateway(t, wsSetup{})
	c, resp := wsDial(t, w.addr, nil, "/refuse")
	if c != nil || resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Refused") != "yes" {
		t.Fatalf("refusal relayed as %d %v", resp.StatusCode, resp.Header)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "no websockets here\n" {
		t.Errorf("body %q", body)
	}
	// The 403 was an ordinary response: the same connection carries another request.
	conn := dialRaw(t, w.addr)
	br := bufio.NewReader(conn)
	for _, p := range []string{"/refuse", "/plain/next"} {
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", p)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s on a kept connection: %v", p, err)
		}
		io.Copy(io.Discard, resp.Body)
		if want := map[string]int{"/refuse": 403, "/plain/next": 200}[p]; resp.StatusCode != want || resp.Close {
			t.Errorf("%s: %d (close %v), want %d on a kept connection", p, resp.StatusCode, resp.Close, want)
		}
	}
}

// TestUpgradeIdleTimeout: a tunnel without traffic for upgradeIdleTimeout is
// closed on both sides; traffic keeps it open.
func TestUpgradeIdleTimeout(t *testing.T) {
	w := startWSGateway(t, wsSetup{idle: "1s"})
	c, resp := wsDial(t, w.addr, nil, "/chat")
	if c == nil {
		t.Fatalf("handshake answered %d", resp.StatusCode)
	}
	c.recv(t)
	// Traffic every 300 ms for 1.5 s: longer than the timeout, never idle for it.
	for range 5 {
		time.Sleep(300 * time.Millisecond)
		c.roundTrip(t, "keep me")
	}
	quiet := time.Now()
	if !c.closed(5 * time.Second) {
		t.Fatal("an idle tunnel was not closed")
	}
	if d := time.Since(quiet); d < 900*time.Millisecond {
		t.Fatalf("closed %v after the last message, before the idle timeout", d)
	}
	select {
	case err := <-w.up.ended:
		if err != io.EOF {
			t.Errorf("the upstream's side ended with %v, want the end of the stream", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream's side was not closed")
	}
	if rec := w.accessRecord(t, 101); rec["reason"] != "upgrade_idle_timeout" {
		t.Errorf("access record reason %q", rec["reason"])
	}
}

// TestUpgradeGracefulShutdown: a shutdown lets open tunnels work through its
// grace period and closes them when it ends.
func TestUpgradeGracefulShutdown(t *testing.T) {
	const grace = 500 * time.Millisecond
	w := startWSGateway(t, wsSetup{grace: grace})
	c, resp := wsDial(t, w.addr, nil, "/chat")
	if c == nil {
		t.Fatalf("handshake answered %d", resp.StatusCode)
	}
	c.recv(t)
	started := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); w.g.Shutdown() }()
	w.shutdown = true
	c.roundTrip(t, "during the grace period")
	if !c.closed(5 * time.Second) {
		t.Fatal("the tunnel was not closed when the grace period ended")
	}
	if d := time.Since(started); d < grace {
		t.Errorf("closed after %v, within the grace period of %v", d, grace)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// TestUpgradeBreakerCountsTunnels: an open tunnel holds its upstream connection
// under circuitBreaker.maxConnections, so with a limit of one a second handshake
// fails fast with 503 until the first tunnel closes.
func TestUpgradeBreakerCountsTunnels(t *testing.T) {
	w := startWSGateway(t, wsSetup{breaker: "{maxConnections: 1}"})
	first, resp := wsDial(t, w.addr, nil, "/one")
	if first == nil {
		t.Fatalf("first handshake answered %d", resp.StatusCode)
	}
	first.recv(t)
	if _, resp := wsDial(t, w.addr, nil, "/two"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second handshake with the only connection in a tunnel: %d, want 503", resp.StatusCode)
	} else if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), "upstream_overflow") {
		t.Fatalf("second handshake: %s", b)
	}
	if m := w.metrics(t, "portcullis_upstream_circuit_breaker_in_use", `limit="maxConnections"`); len(m) != 1 || !strings.HasSuffix(m[0], " 1") {
		t.Errorf("breaker in use: %q", m)
	}
	first.c.Close()
	waitFor(t, "the first tunnel to give its connection back", func() bool {
		m := w.metrics(t, "portcullis_upstream_circuit_breaker_in_use", `limit="maxConnections"`)
		return len(m) == 1 && strings.HasSuffix(m[0], " 0")
	})
	third, resp := wsDial(t, w.addr, nil, "/three")
	if third == nil {
		t.Fatalf("handshake after the first tunnel closed: %d", resp.StatusCode)
	}
	third.recv(t)
	third.roundTrip(t, "room again")
}

// TestUpgradeClientDisconnect: a client that goes away ends the tunnel: the
// upstream reads the end of its stream, and the tunnel gauge goes back to 0.
func TestUpgradeClientDisconnect(t *testing.T) {
	w := startWSGateway(t, wsSetup{})
	c, resp := wsDial(t, w.addr, nil, "/chat")
	if c == nil {
		t.Fatalf("handshake answered %d", resp.StatusCode)
	}
	c.recv(t)
	c.roundTrip(t, "bye soon")
	c.c.Close()
	select {
	case err := <-w.up.ended:
		if err != io.EOF {
			t.Errorf("the upstream's side ended with %v, want the end of the stream", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream did not see the client leave")
	}
	waitFor(t, "the tunnel gauge to drop", func() bool {
		g := w.metrics(t, "portcullis_upstream_tunnels_open", `cluster="default/ws"`)
		return len(g) == 1 && strings.HasSuffix(g[0], " 0")
	})
}

// dialRaw opens a TCP connection with a deadline of 10 seconds on everything.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}
