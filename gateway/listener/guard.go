package listener

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
)

// FramingError is what a guarded connection's Read returns once the client sent a
// request whose framing is ambiguous. It is deliberately not a net.Error: net/http
// answers any other read error in a request head with 400 Bad Request and closes
// the connection, which is the response RFC 9112 §6.3 asks for.
type FramingError struct{ Reason string }

func (e *FramingError) Error() string { return "ambiguous request framing: " + e.Reason }

// guardConn is the net.Conn handed to net/http for HTTP/1.x connections (clear
// text, h2c before the preface, and TLS after a handshake that did not select h2).
// It runs every byte net/http reads through a framer, delivers the bytes before an
// ambiguous request head and then fails the read. It also counts the connection
// towards the listener's limit until Close.
//
// Bytes after a CONNECT, PRI or Upgrade request are held back and given to net/http
// one Read at a time, so that at most the one byte of net/http's background read
// is taken before a handler hijacks the connection; after a hijack (reported by
// http.Server.ConnState) the bytes are a tunnel or another protocol, and pass
// unjudged. Without a hijack net/http reads the next request and the judging
// simply continues.
type guardConn struct {
	net.Conn
	f        framer
	pass     atomic.Bool // hijacked: deliver everything as it is
	held     []byte      // bytes read from Conn but not delivered yet
	heldErr  error       // a read error that came with held bytes
	bad      *FramingError
	reported bool
	srv      *Server
	closed   sync.Once

	// Set when a handler hijacks the connection (an upgrade): it stays in the
	// listener's accounting until closed. hjDone is closed by Close.
	hjMu     sync.Mutex
	hjDone   chan struct{}
	isClosed bool
}

// tlsGuardConn is a guardConn over a *tls.Conn. Its ConnectionState method makes
// net/http fill Request.TLS for HTTP/1.x even though the conn is not a *tls.Conn
// (net/http looks for that method; see TLSState).
type tlsGuardConn struct {
	*guardConn
	state *tls.ConnectionState
}

func (c *tlsGuardConn) ConnectionState() tls.ConnectionState { return *c.state }

func newGuardConn(s *Server, c net.Conn, h2c, scan bool) *guardConn {
	g := &guardConn{Conn: c, f: newFramer(h2c), srv: s}
	if !scan {
		g.pass.Store(true)
	}
	return g
}

// Read implements net.Conn. net/http never calls it concurrently: the background
// read it starts is waited for before the next one.
func (g *guardConn) Read(p []byte) (int, error) {
	if g.bad != nil && !g.pass.Load() {
		return g.fail()
	}
	var n int
	var err error
	fromHeld := len(g.held) > 0
	if fromHeld {
		n = copy(p, g.held)
	} else if g.heldErr != nil {
		err, g.heldErr = g.heldErr, nil
		return 0, err
	} else {
		n, err = g.Conn.Read(p)
	}
	if n == 0 || g.pass.Load() {
		g.consumeHeld(fromHeld, n)
		return n, err
	}
	cut, at, reason := g.f.scan(p[:n])
	if at >= 0 {
		g.bad = &FramingError{Reason: reason}
	}
	if cut < n {
		// Keep the rest: after a violation only a hijack would want it, after an
		// upgrade request it is delivered by the next Read.
		if fromHeld {
			g.held = g.held[cut:]
		} else {
			g.held = append(g.held[:0:0], p[cut:n]...)
			g.heldErr, err = err, nil
		}
	} else {
		g.consumeHeld(fromHeld, n)
	}
	if cut == 0 && g.bad != nil {
		return g.fail()
	}
	return cut, err
}

func (g *guardConn) consumeHeld(fromHeld bool, n int) {
	if fromHeld {
		g.held = g.held[n:]
		if len(g.held) == 0 {
			g.held = nil
		}
	}
}

// fail reports the violation once, when net/http first reads past the bytes that
// were delivered, and fails every later read.
func (g *guardConn) fail() (int, error) {
	if !g.reported {
		g.reported = true
		g.srv.securityEvent(KindAmbiguousFraming, g.RemoteAddr(), g.bad.Reason)
	}
	return 0, g.bad
}

// hijacked is called when a handler takes the connection over (from h1's
// OnHijack, or http.Server.ConnState for net/http): from now on the handler owns
// the byte stream, which is no longer HTTP/1.
func (g *guardConn) hijacked() {
	g.pass.Store(true)
	g.hjMu.Lock()
	if g.hjDone == nil {
		g.hjDone = make(chan struct{})
		if g.isClosed {
			close(g.hjDone)
		}
	}
	g.hjMu.Unlock()
}

// hijackDone returns a channel closed when the hijacked connection is closed,
// or nil if it was not hijacked.
func (g *guardConn) hijackDone() <-chan struct{} {
	g.hjMu.Lock()
	defer g.hjMu.Unlock()
	return g.hjDone
}

// Close implements net.Conn and releases the connection's place in the limit.
func (g *guardConn) Close() error {
	err := g.Conn.Close()
	g.closed.Do(func() {
		g.srv.release()
		g.hjMu.Lock()
		g.isClosed = true
		if g.hjDone != nil {
			close(g.hjDone)
		}
		g.hjMu.Unlock()
	})
	return err
}

// CloseWrite half-closes the connection when the underlying conn can: net/http
// uses it to let the client read a final response before the close.
func (g *guardConn) CloseWrite() error {
	if cw, ok := g.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the wrapped connection (as tls.Conn.NetConn does).
func (g *guardConn) NetConn() net.Conn { return g.Conn }
