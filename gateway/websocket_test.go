package gateway_test

// A minimal WebSocket (RFC 6455) server and client for the upgrade tests: the
// opening handshake with Sec-WebSocket-Accept, and single-frame text and close
// messages, masked from client to server. No module for it is in go.mod, and
// the tests need nothing more.

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// wsGUID is appended to the client's key to compute Sec-WebSocket-Accept
// (RFC 6455 §1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

const (
	opText  = 0x1
	opClose = 0x8
)

func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// wsWrite sends one final frame (RFC 6455 §5.2), masked with a random key
// when mask is set, as a client must (§5.3).
func wsWrite(w io.Writer, opcode byte, payload []byte, mask bool) error {
	hdr := []byte{0x80 | opcode, 0}
	n := len(payload)
	switch {
	case n < 126:
		hdr[1] = byte(n)
	case n < 1<<16:
		hdr[1] = 126
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr[1] = 127
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	body := payload
	if mask {
		hdr[1] |= 0x80
		var key [4]byte
		rand.Read(key[:])
		hdr = append(hdr, key[:]...)
		body = make([]byte, n)
		for i := range payload {
			body[i] = payload[i] ^ key[i%4]
		}
	}
	_, err := w.Write(append(hdr, body...))
	return err
}

// wsRead reads one frame and unmasks it. Fragmented messages are refused: the
// tests send none.
func wsRead(r io.Reader) (opcode byte, payload []byte, masked bool, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, false, err
	}
	if h[0]&0x80 == 0 {
		return 0, nil, false, errors.New("fragmented frame")
	}
	opcode, masked = h[0]&0x0f, h[1]&0x80 != 0
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, false, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, false, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return 0, nil, false, errors.New("frame too large for a test")
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return 0, nil, false, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, false, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return opcode, payload, masked, nil
}

// wsUpstream is a WebSocket echo server on loopback (net/http, hijacking). On
// an upgrade it answers 101 and sends "welcome" at once, then echoes every text
// frame as "echo: <text>" and answers a close frame with one. Path /refuse
// answers 403, a path ending in /rogue 101 to any request; a request that is
// not an upgrade gets 200 naming the Upgrade field it saw.
type wsUpstream struct {
	srv     *httptest.Server
	addr    string
	headers chan http.Header // request header of each upgrade
	ended   chan error       // why each tunnel's read loop ended (io.EOF: the peer closed)
}

func startWSUpstream(t *testing.T, useTLS bool) *wsUpstream {
	t.Helper()
	u := &wsUpstream{headers: make(chan http.Header, 16), ended: make(chan error, 16)}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	if useTLS {
		u.srv.StartTLS()
	} else {
		u.srv.Start()
	}
	t.Cleanup(u.srv.Close)
	u.addr = u.srv.Listener.Addr().String()
	return u
}

func (u *wsUpstream) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/rogue") {
		// Switches protocols whatever was asked (RFC 9110 §7.8 forbids it).
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			conn.Close()
		}
		return
	}
	if r.URL.Path == "/refuse" {
		w.Header().Set("X-Refused", "yes")
		http.Error(w, "no websockets here", http.StatusForbidden)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
		fmt.Fprintf(w, "plain request, Upgrade=%q Connection=%q", r.Header.Get("Upgrade"), r.Header.Get("Connection"))
		return
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if r.Method != http.MethodGet || r.Header.Get("Sec-WebSocket-Version") != "13" || key == "" {
		http.Error(w, "bad handshake", http.StatusBadRequest)
		return
	}
	u.headers <- r.Header.Clone()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	// The 101 and the first message in one write: the gateway must pass on
	// bytes that arrive with the 101.
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		wsAccept(key), r.Header.Get("Sec-WebSocket-Protocol"))
	wsWrite(brw, opText, []byte("welcome"), false)
	brw.Flush()
	for {
		op, p, masked, err := wsRead(brw)
		if err == nil && !masked {
			err = errors.New("unmasked frame from the client (RFC 6455 §5.1)")
		}
		if err != nil {
			u.ended <- err
			return
		}
		if op == opClose {
			wsWrite(conn, opClose, p, false)
			u.ended <- io.EOF
			return
		}
		wsWrite(conn, op, append([]byte("echo: "), p...), false)
	}
}

// wsClient is a WebSocket client connection.
type wsClient struct {
	c  net.Conn
	br *bufio.Reader
}

// wsDial opens a connection to addr (TLS offering http/1.1 when cfg is set)
// and sends the opening handshake for path. It returns the response; with a
// 101 whose Sec-WebSocket-Accept is right, also the client.
func wsDial(t *testing.T, addr string, cfg *tls.Config, path string) (*wsClient, *http.Response) {
	t.Helper()
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: 5 * time.Second}
	if cfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, cfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\n", path, key)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("handshake response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, resp
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsAccept(key) {
		t.Fatalf("Sec-WebSocket-Accept %q, want %q", got, wsAccept(key))
	}
	return &wsClient{c: c, br: br}, resp
}

func (w *wsClient) send(t *testing.T, text string) {
	t.Helper()
	if err := wsWrite(w.c, opText, []byte(text), true); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func (w *wsClient) recv(t *testing.T) string {
	t.Helper()
	op, p, masked, err := wsRead(w.br)
	if err != nil || op != opText || masked {
		t.Fatalf("recv: opcode %d masked %v: %v", op, masked, err)
	}
	return string(p)
}

// roundTrip sends text and expects its echo.
func (w *wsClient) roundTrip(t *testing.T, text string) {
	t.Helper()
	w.send(t, text)
	if got := w.recv(t); got != "echo: "+text {
		t.Fatalf("got %q, want the echo of %q", got, text)
	}
}

// closed reports whether the server closed the connection within d (reading
// and discarding what comes before the end).
func (w *wsClient) closed(d time.Duration) bool {
	w.c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, w.br)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
