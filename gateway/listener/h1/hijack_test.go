package h1_test

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/listener/h1"
	"github.com/portcullis/portcullis/internal/testutil"
)

// echoUpgrade switches to a trivial "echo" protocol, the way WebSocket servers
// do it over net/http: 101 with Upgrade and Connection through WriteHeader,
// then Hijack. Every byte the client sends comes back until it half-closes;
// then the handler closes the connection.
func echoUpgrade(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Upgrade", "echo")
	h.Set("Connection", "Upgrade")
	w.WriteHeader(http.StatusSwitchingProtocols)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic("hijack: " + err.Error())
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.Copy(conn, brw.Reader)
}

func upgradeHandler() http.Handler {
	th := testHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/upgrade" {
			echoUpgrade(w, r)
			return
		}
		th.ServeHTTP(w, r)
	})
}

const upgradeHead = "GET /upgrade HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"

// upgradeOutcome is what a raw client sees of an upgrade: the responses
// before the switch (status and the fields that matter) and the bytes after it.
type upgradeOutcome struct {
	resps  []string
	tunnel string
}

// playUpgrade sends first, then (after the 101 has arrived) later, half-closes
// and reads everything up to the server's close.
func playUpgrade(t *testing.T, addr, first, later string, before int) upgradeOutcome {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, first)
	br := bufio.NewReader(c)
	var o upgradeOutcome
	for i := 0; i <= before; i++ {
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		o.resps = append(o.resps, strings.Join([]string{resp.Status, "upgrade=" + resp.Header.Get("Upgrade"),
			"connection=" + strings.ToLower(resp.Header.Get("Connection")), "cl=" + resp.Header.Get("Content-Length"),
			"te=" + strings.Join(resp.TransferEncoding, ","), "date=" + bool2s(resp.Header.Get("Date") != ""), "body=" + string(body)}, " "))
	}
	io.WriteString(c, later)
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading the tunnel: %v", err)
	}
	o.tunnel = string(rest)
	return o
}

func bool2s(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// TestDifferentialUpgrade serves the same upgrades with net/http and h1: the
// 101 goes out as net/http sends it, and every byte the client sent after the
// request head comes back in order, including bytes that arrived with the head
// (which the server had already buffered) and a pipelined request before it.
func TestDifferentialUpgrade(t *testing.T) {
	h := upgradeHandler()
	a := startNetHTTP(t, h, defaultLimits)
	b := startH1(t, h, defaultLimits, nil)
	cases := []struct {
		name, first, later string
		before             int // responses before the 101
		tunnel             string
	}{
		{name: "bytes after the 101", first: upgradeHead, later: "later bytes", tunnel: "later bytes"},
		{name: "bytes with the head", first: upgradeHead + "early bytes\r\nGET / HTTP/1.1\r\n\r\n", later: "+later",
			tunnel: "early bytes\r\nGET / HTTP/1.1\r\n\r\n+later"},
		{name: "pipelined before", first: get("/hello") + upgradeHead + "x", later: "y", before: 1, tunnel: "xy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := playUpgrade(t, a.addr, tc.first, tc.later, tc.before)
			got := playUpgrade(t, b.addr, tc.first, tc.later, tc.before)
			if strings.Join(ref.resps, "\n") != strings.Join(got.resps, "\n") || ref.tunnel != got.tunnel {
				t.Errorf("net/http:\n%q %q\nh1:\n%q %q", ref.resps, ref.tunnel, got.resps, got.tunnel)
			}
			if got.tunnel != tc.tunnel {
				t.Errorf("tunnel %q, want %q", got.tunnel, tc.tunnel)
			}
			if last := got.resps[len(got.resps)-1]; !strings.HasPrefix(last, "101 Switching Protocols upgrade=echo connection=upgrade cl= te= date=yes") {
				t.Errorf("switch: %s", last)
			}
		})
	}
}

// TestHijackTakesTheWatchedByte: the disconnect watcher reads one byte of a
// connection whose handler waits; that byte is the first of the new protocol
// and must reach the handler after Hijack, before the bytes still in the socket.
func TestHijackTakesTheWatchedByte(t *testing.T) {
	send := make(chan struct{})
	got := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := h1.WatchStarts()
		close(send) // the watcher is armed: let the client send
		deadline := time.Now().Add(5 * time.Second)
		for !h1.HoldsWatchedByte(w) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if h1.WatchStarts() == started || !h1.HoldsWatchedByte(w) {
			got <- "the watcher did not read the byte"
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			got <- err.Error()
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 3)
		_, err = io.ReadFull(brw, b)
		got <- string(b) + errString(err)
	})
	cl := serveOne(t, h, &h1.Options{WatchAfter: time.Millisecond}, nil)
	io.WriteString(cl, upgradeHead)
	select {
	case <-send:
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not start")
	}
	io.WriteString(cl, "XYZ")
	select {
	case s := <-got:
		if s != "XYZ" {
			t.Fatalf("the hijacker read %q, want XYZ", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not finish")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

// TestHijackedConnOutlivesServeConn: a handler may keep the connection after
// it returns; ServeConn returns then without closing it, the ResponseWriter
// refuses further use, and OnHijack saw the connection.
func TestHijackedConnOutlivesServeConn(t *testing.T) {
	ln := listen(t)
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cl.SetDeadline(time.Now().Add(10 * time.Second))
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	var hooked atomic.Pointer[net.Conn]
	kept := make(chan net.Conn, 1)
	misuse := make(chan error, 3)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Upgrade", "echo")
		w.Header().Set("Connection", "Upgrade")
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		_, err = w.Write([]byte("x"))
		misuse <- err
		misuse <- http.NewResponseController(w).Flush()
		_, _, err = http.NewResponseController(w).Hijack()
		misuse <- err
		kept <- conn
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		h1.ServeConn(sc, h, &h1.Options{OnHijack: func(c net.Conn) { hooked.Store(&c) }})
	}()
	io.WriteString(cl, upgradeHead)
	br := bufio.NewReader(cl)
	resp, _ := readResp(t, br, "GET")
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after the hijacking handler did")
	}
	for range 3 {
		if err := <-misuse; !errors.Is(err, http.ErrHijacked) {
			t.Errorf("ResponseWriter after Hijack: %v, want http.ErrHijacked", err)
		}
	}
	if p := hooked.Load(); p == nil || *p != sc {
		t.Error("OnHijack was not called with the served connection")
	}
	conn := <-kept
	defer conn.Close()
	// The connection is still open, and it is the handler's.
	io.WriteString(conn, "still here")
	b := make([]byte, len("still here"))
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "still here" {
		t.Fatalf("after ServeConn returned: %q, %v", b, err)
	}
}

// Test101WithoutHijack: a handler that writes 101 and returns leaves the
// client in an unknown protocol: the 101 goes out, then the connection ends,
// and the misuse is logged.
func Test101WithoutHijack(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Upgrade", "echo")
		w.Header().Set("Connection", "Upgrade")
		w.WriteHeader(http.StatusSwitchingProtocols)
	})
	cl := serveOne(t, h, &h1.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}, nil)
	io.WriteString(cl, upgradeHead)
	br := bufio.NewReader(cl)
	resp, _ := readResp(t, br, "GET")
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
	}
	if rest, closed := waitClosed(cl, 5*time.Second); !closed || rest != "" {
		t.Fatalf("after the 101: %q, closed %v", rest, closed)
	}
	if !strings.Contains(logs.String(), "without a Hijack") {
		t.Errorf("no warning logged: %s", logs)
	}
}
