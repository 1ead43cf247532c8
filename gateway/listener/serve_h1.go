package listener

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/gateway/listener/h1"
)

// HTTP/1.x connections (clear text on HTTP listeners, and TLS connections that
// did not choose h2) are served by h1.ServeConn rather than net/http's server: it
// runs each request on the connection's goroutine, without net/http's per-request
// background-read goroutine, which measurably lowers CPU per request
// (docs/performance.md). HTTP/2 (over TLS, and h2c listeners) stays with net/http.
//
// The trade-off, as in h1's README: a client that goes away while the handler
// waits on an upstream is noticed after h1's WatchAfter (200ms) by a lazy
// watcher, not at once.
//
// A handler may hijack a connection for a protocol upgrade (WebSocket): h1 tells
// the guard (OnHijack), which then passes the bytes unjudged. The connection
// stays in h1Conns until it is closed, also when the handler returned and kept
// it, so that a graceful shutdown closes tunnels when its grace period ends and
// the connection limit counts them while they are open.

// h1Conns tracks the connections h1.ServeConn is serving, for graceful shutdown.
type h1Conns struct {
	mu       sync.Mutex
	conns    map[*h1Conn]struct{}
	closing  bool
	wg       sync.WaitGroup
	shutting atomic.Bool // responses ask clients to close
}

type h1Conn struct {
	c      net.Conn
	active atomic.Int32 // inside the handler
}

// aLongTimeAgo is a deadline in the past: setting it fails a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

func (s *Server) h1Options() *h1.Options {
	return &h1.Options{
		MaxHeaderBytes:    s.limits.MaxRequestHeaderBytes,
		MaxHeaders:        s.limits.MaxRequestHeaders,
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		ConnContext:       connContext,
		Logger:            s.log,
		OnHijack:          onHijack,
	}
}

// onHijack tells the framing guard that the connection is no longer HTTP/1.
func onHijack(c net.Conn) {
	if g := guardOf(c); g != nil {
		g.hijacked()
	}
}

// isHijacked reports whether a handler took c over.
func isHijacked(c net.Conn) bool {
	g := guardOf(c)
	return g != nil && g.hijackDone() != nil
}

// serveH1 serves one HTTP/1.x connection until it ends. It runs on its own
// goroutine.
func (s *Server) serveH1(c net.Conn) {
	t := &s.h1
	hc := &h1Conn{c: c}
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		c.Close()
		return
	}
	if t.conns == nil {
		t.conns = map[*h1Conn]struct{}{}
	}
	t.conns[hc] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.conns, hc)
		t.mu.Unlock()
		t.wg.Done()
	}()
	o := *s.h1opts
	remote := c.RemoteAddr()
	o.OnError = func(kind, detail string) {
		if g := guardOf(c); g != nil && g.bad != nil {
			return // the framing guard has reported it already
		}
		s.securityEvent(h1EventKind(kind), remote, detail)
	}
	h1.ServeConn(c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hc.active.Add(1)
		defer hc.active.Add(-1)
		if t.shutting.Load() {
			w.Header().Set("Connection", "close") // draining: this is the last response
		}
		// h1 has already refused too many header lines (Options.MaxHeaders), so
		// the count serveHTTP makes for net/http's connections is not made again.
		s.serve(w, r)
	}), &o)
	if g := guardOf(c); g != nil {
		if done := g.hijackDone(); done != nil {
			// The handler returned and kept the hijacked connection: it
			// stays tracked (closeH1 closes it) until whoever has it closes it.
			<-done
		}
	}
}

// trackHijacked keeps a connection net/http handed to a handler (h2c
// listeners) in the shutdown accounting until it is closed, as serveH1 does
// for h1's.
func (s *Server) trackHijacked(g *guardConn) {
	t := &s.h1
	hc := &h1Conn{c: g}
	t.mu.Lock()
	if t.conns == nil {
		t.conns = map[*h1Conn]struct{}{}
	}
	t.conns[hc] = struct{}{}
	// During a shutdown the wait group may be waited on already, and must not
	// grow from zero then; closeH1 still finds the connection in conns.
	counted := !t.closing
	if counted {
		t.wg.Add(1)
	}
	t.mu.Unlock()
	go func() {
		<-g.hijackDone()
		t.mu.Lock()
		delete(t.conns, hc)
		t.mu.Unlock()
		if counted {
			t.wg.Done()
		}
	}()
}

func guardOf(c net.Conn) *guardConn {
	switch g := c.(type) {
	case *guardConn:
		return g
	case *tlsGuardConn:
		return g.guardConn
	}
	return nil
}

// h1EventKind names h1's refusals in the listener's security-event vocabulary.
func h1EventKind(kind string) string {
	switch kind {
	case h1.KindTooManyHeaders:
		return KindHeaderCount
	case h1.KindHeaderTooLarge:
		return "header_bytes"
	case h1.KindReadHeaderTimeout:
		return "read_header_timeout"
	}
	return "malformed_request:" + strings.ReplaceAll(kind, " ", "_")
}

// shutdownH1 lets in-flight requests finish (their responses close the
// connection), closes idle connections at once, and returns when all are gone or
// ctx ends, closing what is left then: tunnels of hijacked connections (upgrades)
// carry on until then.
func (s *Server) shutdownH1(ctx context.Context) error {
	t := &s.h1
	t.shutting.Store(true)
	t.mu.Lock()
	t.closing = true
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		t.mu.Lock()
		for hc := range t.conns {
			if hc.active.Load() == 0 && !isHijacked(hc.c) {
				// Idle (or between requests): fail its wait for the next request.
				hc.c.SetReadDeadline(aLongTimeAgo)
			}
		}
		t.mu.Unlock()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			s.closeH1()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// closeH1 closes every HTTP/1.x connection now.
func (s *Server) closeH1() {
	t := &s.h1
	t.mu.Lock()
	t.closing = true
	for hc := range t.conns {
		hc.c.Close()
	}
	t.mu.Unlock()
}
