package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/portcullis/portcullis/gateway/listener/h1"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
)

// Security event kinds reported through Events.
const (
	KindAmbiguousFraming = "ambiguous_framing" // request smuggling attempt or broken client; 400
	KindHeaderCount      = "header_count"      // more header fields than MaxRequestHeaders; 431
	KindConnectionLimit  = "connection_limit"  // a connection above MaxConnections was closed
	KindTLSHandshake     = "tls_handshake"     // a TLS handshake failed or timed out
	KindPathRejected     = "path_rejected"     // for the core: PathNormalizer refused a path; 400
)

// Events receives security events. Implementations must be safe for concurrent
// use and should not block: they are called on connection goroutines.
type Events interface {
	SecurityEvent(kind, remoteAddr, detail string)
}

// Options are the collaborators of a Server. The zero value is valid.
type Options struct {
	// Logger gets lifecycle messages and net/http's own error log. Nil discards.
	Logger *slog.Logger
	// Events gets security events. Nil: they are only logged, at Debug.
	Events Events
	// Certificates supplies the managed certificates of a listener whose tls has
	// acme (see CertificateSource; SetCertificateSource can attach it later).
	// Nil: only static certificates are served until one is attached. Ignored
	// without acme.
	Certificates CertificateSource
	// Challenge answers ACME HTTP-01 validation requests on a clear-text
	// listener: it is called before the handler for GET requests under
	// /.well-known/acme-challenge/ and returns true when it wrote the response.
	// Nil: such requests go to the handler like any other. Ignored on HTTPS.
	Challenge func(http.ResponseWriter, *http.Request) bool
}

// Limits are a listener's edge limits with the defaults applied.
type Limits struct {
	MaxConnections        int
	MaxRequestHeaderBytes int
	MaxRequestHeaders     int
	ReadHeaderTimeout     time.Duration // also bounds the TLS handshake
	IdleTimeout           time.Duration
	MaxConcurrentStreams  int
	MaxRequestBodyBytes   int64 // not enforced here: the core applies it per route
}

// Default limits, as documented on config.ListenerLimits.
const (
	DefaultMaxConnections        = 10000
	DefaultMaxRequestHeaderBytes = 32 << 10
	DefaultMaxRequestHeaders     = 100
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultIdleTimeout           = 120 * time.Second
	DefaultMaxConcurrentStreams  = 250
	DefaultMaxRequestBodyBytes   = 16 << 20
)

// EffectiveLimits returns l with every zero field replaced by its default.
func EffectiveLimits(l config.ListenerLimits) Limits {
	return Limits{
		MaxConnections:        or(l.MaxConnections, DefaultMaxConnections),
		MaxRequestHeaderBytes: or(l.MaxRequestHeaderBytes, DefaultMaxRequestHeaderBytes),
		MaxRequestHeaders:     or(l.MaxRequestHeaders, DefaultMaxRequestHeaders),
		ReadHeaderTimeout:     or(l.ReadHeaderTimeout.D(), DefaultReadHeaderTimeout),
		IdleTimeout:           or(l.IdleTimeout.D(), DefaultIdleTimeout),
		MaxConcurrentStreams:  or(l.MaxConcurrentStreams, DefaultMaxConcurrentStreams),
		MaxRequestBodyBytes:   or(l.MaxRequestBodyBytes, DefaultMaxRequestBodyBytes),
	}
}

func or[T int | int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Stats are a listener's counters, for metrics.
type Stats struct {
	OpenConnections     int64  // accepted and not closed, including TLS handshakes in progress
	RejectedConnections uint64 // closed at once because of MaxConnections
}

// Server is one listener: a socket, its TLS termination and an http.Server.
type Server struct {
	name     string
	address  string
	protocol string
	limits   Limits
	log      *slog.Logger
	events   Events
	handler  http.Handler
	tls      *tlsState                                     // nil for clear text
	acmeHTTP func(http.ResponseWriter, *http.Request) bool // HTTP-01 answers; clear text only
	http     *http.Server
	noScan   bool // benchmarks only: no framing guard
	h1       h1Conns
	h1opts   *h1.Options

	open     atomic.Int64
	rejected atomic.Uint64

	mu      sync.Mutex
	ln      *acceptor
	served  chan struct{} // closed when http.Server.Serve returns
	started bool
}

// New checks spec, loads its certificates and returns a Server that is not bound
// yet. Errors name the field of spec that is wrong ("tls.certificates[0].certFile:
// open ...").
func New(name string, spec config.ListenerSpec, h http.Handler, opts Options) (*Server, error) {
	s := &Server{name: name, address: spec.Address, handler: h, events: opts.Events, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("listener", name)
	if h == nil {
		return nil, errors.New("handler: nil")
	}
	if spec.Address == "" {
		return nil, errors.New("address: required")
	}
	if _, _, err := net.SplitHostPort(spec.Address); err != nil {
		return nil, fmt.Errorf("address: %v", err)
	}
	s.protocol = spec.Protocol
	if s.protocol == "" {
		s.protocol = config.ProtocolHTTP
		if spec.TLS != nil {
			s.protocol = config.ProtocolHTTPS
		}
	}
	switch s.protocol {
	case config.ProtocolHTTP, config.ProtocolH2C:
		if spec.TLS != nil {
			return nil, fmt.Errorf("tls: only for protocol HTTPS, not %s", s.protocol)
		}
	case config.ProtocolHTTPS:
		if spec.TLS == nil {
			return nil, errors.New("tls: required for protocol HTTPS")
		}
		ts, err := newTLSState(*spec.TLS, opts.Certificates)
		if err != nil {
			return nil, err
		}
		s.tls = ts
	default:
		return nil, fmt.Errorf("protocol: %q is not one of HTTP, HTTPS, H2C", s.protocol)
	}
	l := spec.Limits
	for _, f := range []struct {
		name string
		v    int64
	}{{"maxConnections", int64(l.MaxConnections)}, {"maxRequestHeaderBytes", int64(l.MaxRequestHeaderBytes)},
		{"maxRequestHeaders", int64(l.MaxRequestHeaders)}, {"maxConcurrentStreams", int64(l.MaxConcurrentStreams)},
		{"maxRequestBodyBytes", l.MaxRequestBodyBytes}} {
		if f.v < 0 {
			return nil, fmt.Errorf("limits.%s: must not be negative", f.name)
		}
	}
	switch spec.Paths.EscapedSlashes {
	case "", config.EscapedSlashesReject, config.EscapedSlashesKeep, config.EscapedSlashesDecode:
	default:
		return nil, fmt.Errorf("paths.escapedSlashes: %q is not one of reject, keep, decode", spec.Paths.EscapedSlashes)
	}
	if s.tls == nil {
		s.acmeHTTP = opts.Challenge
	}
	s.limits = EffectiveLimits(l)
	s.h1opts = s.h1Options()

	var protos http.Protocols
	protos.SetHTTP1(true)
	switch s.protocol {
	case config.ProtocolHTTPS:
		protos.SetHTTP2(true) // chosen by ALPN (RFC 7301)
	case config.ProtocolH2C:
		protos.SetUnencryptedHTTP2(true) // prior knowledge only (RFC 9113 §3.3)
	}
	s.http = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		Protocols:         &protos,
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		MaxHeaderBytes:    s.limits.MaxRequestHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: s.limits.MaxConcurrentStreams},
		ConnState:         s.connState,
		ConnContext:       connContext,
		// net/http's own log: accept errors, handler panics, misused ResponseWriters.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		// ReadTimeout and WriteTimeout stay zero: they bound a whole request or
		// response and would cut streaming and gRPC. Slow heads are bounded by
		// ReadHeaderTimeout, idle keep-alive by IdleTimeout, bodies by the core.
	}
	return s, nil
}

// Name returns the listener's name.
func (s *Server) Name() string { return s.name }

// Protocol returns HTTP, HTTPS or H2C.
func (s *Server) Protocol() string { return s.protocol }

// Limits returns the effective limits.
func (s *Server) Limits() Limits { return s.limits }

// Stats returns the connection counters.
func (s *Server) Stats() Stats {
	return Stats{OpenConnections: s.open.Load(), RejectedConnections: s.rejected.Load()}
}

// Start binds the address and serves in the background; a Server starts once.
// The socket is bound with SO_REUSEPORT where the platform has it, so that a
// changed listener can be bound on the same address while the old one drains
// (see Shutdown).
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("listener: already started")
	}
	lc := net.ListenConfig{Control: reusePort}
	raw, err := lc.Listen(context.Background(), "tcp", s.address)
	if err != nil {
		return fmt.Errorf("address: %w", err)
	}
	s.started = true
	s.ln = newAcceptor(s, raw)
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("listener stopped", "error", err)
		}
	}()
	s.log.Info("listening", "address", raw.Addr().String(), "protocol", s.protocol)
	return nil
}

// Addr returns the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops accepting, lets requests in flight finish (HTTP/2 clients get a
// GOAWAY), closes idle connections and returns when all are closed or when ctx
// ends, with ctx's error. Hijacked HTTP/1 connections (upgrades, such as
// WebSocket tunnels) are left alone until ctx ends, and closed then.
//
// With SO_REUSEPORT, connections the kernel queued on this socket but that were
// not accepted yet are reset when it closes; a rebinding caller should start the
// new Server first, so that new connections are spread over both, and shut the
// old one down next.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ln, served := s.ln, s.served
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
	ln.Close()
	h1done := make(chan error, 1)
	go func() { h1done <- s.shutdownH1(ctx) }()
	err := s.http.Shutdown(ctx)
	if herr := <-h1done; err == nil {
		err = herr
	}
	done := make(chan struct{})
	go func() { ln.wait(); <-served; close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
	err := s.http.Close()
	ln.Close()
	s.closeH1()
	ln.wait()
	return err
}

// serveHTTP wraps the handler with the checks net/http does not make.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if n := headerLines(r); n > s.limits.MaxRequestHeaders {
		// RFC 6585 §5: 431 when the header section is too large.
		s.securityEvent(KindHeaderCount, remoteAddr(r.RemoteAddr),
			strconv.Itoa(n)+" header fields, limit "+strconv.Itoa(s.limits.MaxRequestHeaders))
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		http.Error(w, "Request Header Fields Too Large", http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	s.serve(w, r)
}

// acmeChallengePath is where HTTP-01 validation requests arrive (RFC 8555 §8.3).
const acmeChallengePath = "/.well-known/acme-challenge/"

// serve is the last step before the handler, for every protocol: the
// Strict-Transport-Security header on TLS, and the answers to the CA's HTTP-01
// validation requests on clear text, which must not depend on routing (a route
// that redirects everything to HTTPS would otherwise swallow them).
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if v := s.hsts(); v != "" {
		// Set before routing: a response from an upstream that carries its own
		// Strict-Transport-Security header replaces this one.
		w.Header().Set("Strict-Transport-Security", v)
	} else if s.acmeHTTP != nil && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, acmeChallengePath) && s.acmeHTTP(w, r) {
		return
	}
	s.handler.ServeHTTP(w, r)
}

// headerLines counts the header field lines of r as the client sent them, adding
// the ones net/http moves out of r.Header (Host, Transfer-Encoding).
func headerLines(r *http.Request) int {
	n := 0
	for _, v := range r.Header {
		n += len(v)
	}
	if r.ProtoMajor == 1 {
		if r.Host != "" {
			n++
		}
		n += len(r.TransferEncoding)
	}
	return n
}

// admit counts a new connection, or closes it when the limit is reached. It never
// blocks: a client over the limit is refused at once rather than left queued.
func (s *Server) admit(c net.Conn) bool {
	if s.open.Add(1) <= int64(s.limits.MaxConnections) {
		return true
	}
	s.open.Add(-1)
	s.rejected.Add(1)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // reset: no TIME_WAIT for refused connections
	}
	c.Close()
	s.securityEvent(KindConnectionLimit, c.RemoteAddr(), "limit "+strconv.Itoa(s.limits.MaxConnections))
	return false
}

func (s *Server) release() { s.open.Add(-1) }

// connState tracks what only net/http sees: a hijack ends the framing guard's
// work, and an HTTP/2 *tls.Conn (which cannot be wrapped) is released when closed.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateHijacked:
		if g := guardOf(c); g != nil {
			g.hijacked()
			s.trackHijacked(g)
		}
	case http.StateClosed:
		if _, ok := c.(*tls.Conn); ok {
			s.release()
		}
	}
}

func (s *Server) securityEvent(kind string, addr net.Addr, detail string) {
	ra := ""
	if addr != nil {
		ra = addr.String()
	}
	if s.events != nil {
		s.events.SecurityEvent(kind, ra, detail)
		return
	}
	s.log.Debug("security event", "kind", kind, "remote", ra, "detail", detail)
}

type remoteAddr string

func (a remoteAddr) Network() string { return "tcp" }
func (a remoteAddr) String() string  { return string(a) }
