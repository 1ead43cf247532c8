package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"strconv"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// target is an allowed destination with the addresses the guard checked.
type target struct {
	svc   *Service
	host  string
	port  int
	addrs []netip.Addr
}

type targetKey struct{}

// dialChecked connects to one of t's checked addresses, in order, within the
// connect timeout. It never resolves a name.
func (h *Handler) dialChecked(ctx context.Context, t *target) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, h.connectTimeout)
	defer cancel()
	var errs []error
	for _, a := range t.addrs {
		c, err := h.dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(t.port)).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// originateTLS runs the TLS handshake to the service: SNI and verification
// for the requested name (or IP literal), against the service's caFile or the
// system roots.
func (h *Handler) originateTLS(ctx context.Context, c net.Conn, t *target) (net.Conn, error) {
	cfg := h.tlsByService[t.svc.Name].Clone()
	cfg.ServerName = t.host
	tc := tls.Client(c, cfg)
	hctx, cancel := context.WithTimeout(ctx, h.connectTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, &tlsError{err}
	}
	return tc, nil
}

type tlsError struct{ err error }

func (e *tlsError) Error() string { return "TLS origination: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// errNoTarget: the transport was asked to dial without a checked target, which
// would be a bug; it fails closed.
var errNoTarget = errors.New("egress: dial without a checked destination")

func (h *Handler) dialForTransport(ctx context.Context, _, _ string) (net.Conn, error) {
	t, ok := ctx.Value(targetKey{}).(*target)
	if !ok {
		return nil, errNoTarget
	}
	return h.dialChecked(ctx, t)
}

func (h *Handler) dialTLSForTransport(ctx context.Context, _, _ string) (net.Conn, error) {
	t, ok := ctx.Value(targetKey{}).(*target)
	if !ok {
		return nil, errNoTarget
	}
	c, err := h.dialChecked(ctx, t)
	if err != nil {
		return nil, err
	}
	return h.originateTLS(ctx, c, t)
}

// tunnel answers a CONNECT: it connects to the checked address, takes the
// client connection over, sends 200 and splices the two until either ends or
// the idle timeout. TLS inside the tunnel is the client's, end to end.
func (h *Handler) tunnel(w http.ResponseWriter, r *http.Request, t *target, info *proxy.Info) error {
	if r.ProtoMajor != 1 {
		// HTTP/2 CONNECT (RFC 9113 §8.5) would be a stream, not a connection
		// to take over; not supported yet.
		return &filter.Error{Status: http.StatusHTTPVersionNotSupported, Reason: ReasonConnectHTTP2}
	}
	up, err := h.dialChecked(r.Context(), t)
	if err != nil {
		return dialFailure(err)
	}
	if info != nil {
		info.Upstream = up.RemoteAddr().String()
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return &filter.Error{Status: http.StatusInternalServerError, Reason: "egress_hijack_failed", Err: err}
	}
	// RFC 9110 §9.3.6: a 2xx to CONNECT carries no Content-Length or
	// Transfer-Encoding; the tunnel starts right after the empty line.
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		conn.Close()
		up.Close()
		return &filter.Error{Status: 499, Reason: "client_gone", Err: err}
	}
	clientR := brw.Reader // reads the client's bytes the server already held first
	res := proxy.Splice(conn, clientR, up, h.tunnelIdle)
	if info != nil {
		info.TunnelBytesIn, info.TunnelBytesOut = res.FromClient, res.ToClient
		if res.IdleClosed {
			info.Reason = "egress_tunnel_idle_timeout"
		}
	}
	return nil
}

// forwardChecked is the end of the filter chain: it forwards the request to
// the target ServeHTTP checked, whatever the filters did to Host or URL.
func (h *Handler) forwardChecked(w http.ResponseWriter, r *http.Request) error {
	t, ok := r.Context().Value(targetKey{}).(*target)
	if !ok {
		return &filter.Error{Status: http.StatusInternalServerError, Reason: "internal_error", Err: errNoTarget}
	}
	return h.forward(w, r, t, proxy.InfoFrom(r.Context()))
}

// forward sends an HTTP request (absolute-form or origin-form) to the checked
// address, over TLS when the service originates it, and relays the response.
// Hop-by-hop fields (Proxy-Authorization and Proxy-Connection among them) and
// client-sent X-Forwarded-* fields are dropped; none is added, so the external
// service does not learn the caller's address.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, t *target, info *proxy.Info) error {
	ctx, cancel := context.WithTimeout(r.Context(), h.requestTimeout)
	defer cancel()
	var upstreamAddr string
	trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { upstreamAddr = ci.Conn.RemoteAddr().String() }}
	ctx = httptrace.WithClientTrace(context.WithValue(ctx, targetKey{}, t), trace)

	scheme, defPort := "http", 80
	if t.svc.spec.OriginateTLS {
		scheme, defPort = "https", 443
	}
	authority := net.JoinHostPort(t.host, strconv.Itoa(t.port))
	hostField := authority
	if t.port == defPort {
		hostField = t.host
		if ip, err := netip.ParseAddr(t.host); err == nil && ip.Is6() {
			hostField = "[" + t.host + "]"
		}
	}
	var fail error
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = scheme, authority
			pr.Out.Host = hostField
		},
		Transport:     h.transport,
		FlushInterval: -1, // streamed responses (events, long polls) go out as they come
		ErrorHandler:  func(_ http.ResponseWriter, _ *http.Request, err error) { fail = err },
	}
	rp.ServeHTTP(w, r.WithContext(ctx))
	if info != nil && upstreamAddr != "" {
		info.Upstream = upstreamAddr
	}
	if fail == nil {
		return nil
	}
	if r.Context().Err() != nil {
		return &filter.Error{Status: 499, Reason: "client_gone", Err: fail}
	}
	if ctx.Err() != nil {
		return &filter.Error{Status: http.StatusGatewayTimeout, Reason: ReasonTimeout, Err: fail}
	}
	return dialFailure(fail)
}

// dialFailure maps a failed connection to the status the client sees.
func dialFailure(err error) error {
	var te *tlsError
	var ne net.Error
	switch {
	case errors.As(err, &te):
		return &filter.Error{Status: http.StatusBadGateway, Reason: ReasonTLSFailed, Err: err}
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return &filter.Error{Status: http.StatusGatewayTimeout, Reason: ReasonTimeout, Err: err}
	}
	return &filter.Error{Status: http.StatusBadGateway, Reason: ReasonConnectFailed, Err: err}
}
