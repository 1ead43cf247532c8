package h1

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"time"
)

var _ http.Hijacker = (*response)(nil)

// errBodyBusy: a goroutine of the handler is inside a Read of the request body,
// which owns the connection's reader until it returns.
var errBodyBusy = errors.New("h1: Hijack while another goroutine of the handler reads the request body")

// Hijack implements http.Hijacker, which http.ResponseController.Hijack calls:
// the handler takes the connection over, for a protocol upgrade (RFC 9110 §7.8)
// or a tunnel, as with net/http.
//
// A status written before (typically WriteHeader(101) with the Upgrade and
// Connection fields) goes out first, with any body written so far; with none
// written nothing is sent and the handler writes its own response. The
// connection then leaves the server: its deadlines are cleared, the disconnect
// watcher is stopped, the request body can no longer be read, the
// ResponseWriter's methods return http.ErrHijacked, and ServeConn returns
// without closing it when the handler returns. Closing it is the handler's.
//
// Bytes the client sent after the request head and that the server has already
// read (a pipelined start of the new protocol, or the byte the disconnect
// watcher read) are not lost: the returned conn delivers them first, and the
// bufio.Reader reads through the conn, so either may be read from. Options.
// OnHijack is called before Hijack returns.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.finished.Load() {
		return nil, nil, w.doneErr()
	}
	c := w.c
	if b := w.body; b != nil {
		if !b.mu.TryLock() {
			return nil, nil, errBodyBusy
		}
		b.closed = true // the rest of the body, if any, is the handler's to read from the conn
		b.mu.Unlock()
	}
	w.disableContinue()
	// The watcher may be reading the connection: end its read; a byte it read
	// is kept in c.wbuf (c.held).
	c.stopWatch()
	if w.wroteHeader {
		w.fullDuplex = true // what is left of a request body is the handler's now: not drained
		w.flushPending()
		w.s.bw.Flush()
	}
	if err := c.werr; err != nil {
		return nil, nil, err
	}
	// What the server read past the head. The watcher only reads with c.br
	// empty, and c.br is not read while it holds a byte, so at most one of the
	// two has something; the order below is the stream's order in any case.
	var pre []byte
	if n := c.br.Buffered(); n > 0 {
		p, _ := c.br.Peek(n)
		pre = append(pre, p...)
		c.br.Discard(n)
	}
	if c.held {
		pre = append(pre, c.wbuf[0])
		c.held = false
	}
	c.rwc.SetDeadline(time.Time{}) // idle, read-header and the handler's own deadlines
	c.rdl = rdlNone
	c.hijacked = true
	w.hijacked = true
	w.finished.Store(true)
	var conn net.Conn = c.rwc
	if len(pre) > 0 {
		conn = &hijackedConn{Conn: c.rwc, pre: pre}
	}
	if c.o.OnHijack != nil {
		c.o.OnHijack(c.rwc)
	}
	return conn, bufio.NewReadWriter(bufio.NewReader(conn), bufio.NewWriter(conn)), nil
}

// doneErr is what the ResponseWriter's methods return once the handler has
// returned or hijacked the connection.
func (w *response) doneErr() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	return errFinished
}

// hijackedConn is a hijacked connection whose first bytes the server had
// already read: Read returns them before reading the connection.
type hijackedConn struct {
	net.Conn
	pre []byte
}

func (h *hijackedConn) Read(p []byte) (int, error) {
	if len(h.pre) > 0 {
		n := copy(p, h.pre)
		h.pre = h.pre[n:]
		return n, nil
	}
	return h.Conn.Read(p)
}

// CloseWrite half-closes the connection when the one underneath can (a
// *net.TCPConn, a *tls.Conn, the listener's guard), for tunnels that pass a
// half-close on.
func (h *hijackedConn) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// NetConn returns the connection underneath (as tls.Conn.NetConn does).
func (h *hijackedConn) NetConn() net.Conn { return h.Conn }
