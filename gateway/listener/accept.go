package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// acceptor is the net.Listener given to http.Server.Serve. It applies the
// connection limit and wraps HTTP/1.x connections in the framing guard.
//
// For clear text it accepts on the caller's goroutine. For TLS it runs its own
// accept loop and completes every handshake in a goroutine of its own, under a
// deadline: the guard has to sit above TLS, so the handshake cannot be left to
// net/http, and a client that never finishes its handshake must not hold up the
// loop. Handshaken connections reach Accept through a channel.
type acceptor struct {
	s      *Server
	raw    net.Listener
	ready  chan net.Conn // TLS: handshaken connections
	done   chan struct{}
	ctx    context.Context // cancelled on Close: interrupts handshakes
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup // TLS accept loop and handshakes
}

func newAcceptor(s *Server, raw net.Listener) *acceptor {
	a := &acceptor{s: s, raw: raw, done: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if s.tls != nil {
		a.ready = make(chan net.Conn)
		a.wg.Add(1)
		go a.loop()
	}
	return a
}

// Accept implements net.Listener.
func (a *acceptor) Accept() (net.Conn, error) {
	if a.ready != nil {
		select {
		case c := <-a.ready:
			return c, nil
		case <-a.done:
			return nil, net.ErrClosed
		}
	}
	for {
		c, err := a.raw.Accept()
		if err != nil {
			return nil, err // http.Server retries temporary errors with a backoff
		}
		if !a.s.admit(c) {
			continue
		}
		g := newGuardConn(a.s, c, a.s.h2c(), !a.s.noScan)
		if a.s.h2c() {
			return g, nil // h2c needs net/http's HTTP/2 server
		}
		go a.s.serveH1(g)
	}
}

// Close implements net.Listener: it stops accepting and interrupts handshakes.
func (a *acceptor) Close() error {
	var err error
	a.once.Do(func() {
		close(a.done)
		a.cancel()
		err = a.raw.Close()
	})
	return err
}

// Addr implements net.Listener.
func (a *acceptor) Addr() net.Addr { return a.raw.Addr() }

// wait returns when the TLS accept loop and all handshakes have ended.
func (a *acceptor) wait() { a.wg.Wait() }

func (a *acceptor) loop() {
	defer a.wg.Done()
	var delay time.Duration
	for {
		c, err := a.raw.Accept()
		if err != nil {
			select {
			case <-a.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does
			// instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			a.s.log.Warn("accept failed", "error", err, "retry", delay)
			select {
			case <-time.After(delay):
			case <-a.done:
				return
			}
			continue
		}
		delay = 0
		if !a.s.admit(c) {
			continue
		}
		a.wg.Add(1)
		go a.handshake(c)
	}
}

// handshake completes the TLS handshake of raw within ReadHeaderTimeout and hands
// the connection to net/http: as the *tls.Conn itself when ALPN chose h2 (net/http
// starts HTTP/2 only on a *tls.Conn), otherwise wrapped in the framing guard.
func (a *acceptor) handshake(raw net.Conn) {
	defer a.wg.Done()
	tc := tls.Server(raw, a.s.tls.base)
	raw.SetDeadline(time.Now().Add(a.s.limits.ReadHeaderTimeout))
	if err := tc.HandshakeContext(a.ctx); err != nil {
		a.s.handshakeFailed(raw, err)
		tc.Close()
		a.s.release()
		return
	}
	raw.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	if st.NegotiatedProtocol == alpnACME {
		// A TLS-ALPN-01 validation handshake carries no application data: the
		// CA closes after the handshake, and so do we (RFC 8737 §3).
		tc.Close()
		a.s.release()
		return
	}
	var c net.Conn = tc
	if st.NegotiatedProtocol != "h2" {
		go a.s.serveH1(&tlsGuardConn{guardConn: newGuardConn(a.s, tc, false, !a.s.noScan), state: &st})
		return
	}
	select {
	case a.ready <- c:
	case <-a.done:
		c.Close()
		if c == net.Conn(tc) {
			a.s.release()
		}
	}
}

func (s *Server) handshakeFailed(raw net.Conn, err error) {
	var re tls.RecordHeaderError
	if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
		// As net/http does: tell a client speaking clear text what went wrong.
		io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
	}
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		// A TCP health check or port probe, or our own shutdown: not an event.
		s.log.Debug("TLS handshake ended", "remote", raw.RemoteAddr().String(), "error", err)
		return
	}
	s.securityEvent(KindTLSHandshake, raw.RemoteAddr(), err.Error())
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE":
		return true
	}
	return false
}

func (s *Server) h2c() bool { return s.protocol == "H2C" }
