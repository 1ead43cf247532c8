// Package transport moves requests to one upstream endpoint: a pool of HTTP/1.1
// connections driven on the caller's goroutine, or net/http's HTTP/2 transport (over
// TLS or h2c) where multiplexing is wanted. It originates TLS and mTLS.
//
// It is not for choosing endpoints, retrying or load balancing (gateway/upstream and
// gateway/proxy do that): a Pool serves exactly one address.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"
)

// Protocols a Pool speaks to its endpoint.
const (
	HTTP1 = "HTTP1"
	HTTP2 = "HTTP2" // over TLS
	H2C   = "H2C"   // clear text, prior knowledge
)

// Options configure a Pool. Every field documents its zero value.
type Options struct {
	// Protocol is HTTP1 (zero value), HTTP2 or H2C.
	Protocol string
	// TLS, when non-nil, makes the pool originate TLS with this config (cloned).
	TLS *tls.Config
	// ConnectTimeout bounds dialling and the TLS handshake. Zero: 5s.
	ConnectTimeout time.Duration
	// MaxIdle is the number of idle HTTP/1.1 connections kept. Zero: 256.
	MaxIdle int
	// IdleTimeout closes connections idle longer than this. Zero: 90s.
	IdleTimeout time.Duration
	// AcquireConn, when set, is asked before a new connection is dialled (the
	// cluster's circuit breaker on connections); ok=false fails the request with
	// ErrConnLimit. release is called when the connection closes.
	AcquireConn func() (release func(), ok bool)
	// Dial replaces net.Dialer.DialContext (tests, or a checked dialer). Nil: net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Errors a RoundTrip may return besides network errors.
var (
	ErrConnLimit = errors.New("upstream connection limit reached")
	ErrClosed    = errors.New("pool closed")
)

// ConnectError wraps a failure to reach the endpoint at all: nothing of the request
// was sent, so any request may be retried elsewhere.
type ConnectError struct{ Err error }

func (e *ConnectError) Error() string { return "connect: " + e.Err.Error() }
func (e *ConnectError) Unwrap() error { return e.Err }

// Pool sends requests to one endpoint. Safe for concurrent use.
type Pool interface {
	// RoundTrip sends req to the endpoint. req.URL.Host is ignored: the pool's
	// address is dialled; req.Host is sent as the Host header. The caller must close
	// the response body; a body read to EOF returns the connection to the pool.
	// For a 101 (Switching Protocols, HTTP1 only) the body is the connection
	// itself, an io.ReadWriteCloser out of the pool (see upgrade.go).
	RoundTrip(req *http.Request) (*http.Response, error)
	// Close closes idle connections and refuses new requests; in-flight ones finish.
	Close() error
}

// New returns a Pool for addr ("ip:port").
func New(addr string, o Options) Pool {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.MaxIdle <= 0 {
		o.MaxIdle = 256
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 90 * time.Second
	}
	if o.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		o.Dial = d.DialContext
	}
	switch o.Protocol {
	case HTTP2, H2C:
		return newH2(addr, o)
	default:
		return newH1(addr, o)
	}
}

// dial opens a connection with the connect timeout, the connection breaker and,
// when configured, a TLS handshake offering alpn.
func dial(ctx context.Context, addr string, o *Options, alpn string) (net.Conn, func(), error) {
	release := func() {}
	if o.AcquireConn != nil {
		r, ok := o.AcquireConn()
		if !ok {
			return nil, nil, ErrConnLimit
		}
		release = r
	}
	ctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	c, err := o.Dial(ctx, "tcp", addr)
	if err != nil {
		release()
		return nil, nil, &ConnectError{Err: err}
	}
	if o.TLS != nil {
		cfg := o.TLS.Clone()
		if alpn != "" {
			cfg.NextProtos = []string{alpn}
		}
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			release()
			return nil, nil, &ConnectError{Err: err}
		}
		c = tc
	}
	return c, release, nil
}
