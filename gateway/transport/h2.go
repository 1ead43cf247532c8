package transport

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
)

// h2Pool wraps net/http's HTTP/2 client for one address. HTTP/2 multiplexes many
// requests over few connections, so the per-connection goroutines that make
// net/http's HTTP/1.1 path costly are amortised here; it also carries trailers,
// deadlines and cancellation (RST_STREAM) that gRPC needs.
type h2Pool struct {
	t      *http.Transport
	scheme string
}

var _ Pool = (*h2Pool)(nil)

func newH2(addr string, o Options) *h2Pool {
	p := new(http.Protocols)
	t := &http.Transport{
		MaxIdleConnsPerHost: o.MaxIdle,
		IdleConnTimeout:     o.IdleTimeout,
		Protocols:           p,
		DisableCompression:  true, // a proxy forwards encodings as they are
	}
	// The pool dials its own address whatever the URL says.
	dialFn := func(alpn string) func(ctx context.Context, _, _ string) (net.Conn, error) {
		return func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, release, err := dial(ctx, addr, &o, alpn)
			if err != nil {
				return nil, err
			}
			if _, isTLS := c.(*tls.Conn); isTLS {
				// net/http learns the ALPN result only from a *tls.Conn, so it
				// must not be wrapped; HTTP/2 holds few connections, and the
				// breaker slot is given back at once rather than at close.
				release()
				return c, nil
			}
			return &releasingConn{Conn: c, release: release}, nil
		}
	}
	scheme := "http"
	if o.Protocol == H2C {
		p.SetUnencryptedHTTP2(true)
		t.DialContext = dialFn("")
	} else {
		p.SetHTTP2(true)
		scheme = "https"
		t.DialTLSContext = dialFn("h2")
		if o.TLS == nil {
			// HTTP2 without TLS is refused by config validation; be safe anyway.
			p.SetHTTP2(false)
			p.SetUnencryptedHTTP2(true)
			scheme = "http"
			t.DialContext = dialFn("")
		}
	}
	return &h2Pool{t: t, scheme: scheme}
}

func (p *h2Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	req.URL.Scheme = p.scheme
	resp, err := p.t.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (p *h2Pool) Close() error {
	p.t.CloseIdleConnections()
	return nil
}

// releasingConn gives back a connection-breaker slot when the connection closes.
type releasingConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *releasingConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
