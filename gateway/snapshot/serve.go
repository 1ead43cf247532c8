package snapshot

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/egress"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/listener"
	"github.com/portcullis/portcullis/gateway/observe"
	"github.com/portcullis/portcullis/gateway/proxy"
	"github.com/portcullis/portcullis/gateway/route"
	"go.opentelemetry.io/otel/trace"
)

// listenerHandler serves the requests of one listener on one snapshot.
type listenerHandler struct {
	name    string
	scheme  string
	table   *route.Table[*compiledRule]
	paths   listener.PathNormalizer
	trusted []netip.Prefix
	obs     *observe.Observer
	log     *slog.Logger
	noRoute routeStats

	// Set on an egress listener (spec.egress), which serves every request with
	// it instead of the route table (egress.go).
	egress      *egress.Handler
	egressStats routeStats
}

func (s *Snapshot) newListenerHandler(key string, o *config.Object[config.ListenerSpec], rules []route.Rule[*compiledRule]) (*listenerHandler, error) {
	ref := o.Ref(config.KindListener)
	trusted, err := parseTrusted(o.Spec.TrustedProxies)
	if err != nil {
		return nil, fieldError(o.Source, ref, "spec.trustedProxies", err)
	}
	table, err := route.Compile(rules)
	if err != nil {
		var ce *route.CompileError
		if errors.As(err, &ce) && ce.Rule >= 0 && ce.Rule < len(rules) {
			// Find which Route resource and rule this was, to name its line.
			cr := rules[ce.Rule].Value
			if src, rref, field, ok := s.locateRule(cr); ok {
				return nil, fieldError(src, rref, field+"."+ce.Field, ce.Err)
			}
		}
		return nil, fieldError(o.Source, ref, "spec", err)
	}
	scheme := "http"
	if o.Spec.TLS != nil || o.Spec.Protocol == config.ProtocolHTTPS {
		scheme = "https"
	}
	h := &listenerHandler{
		name:    key,
		scheme:  scheme,
		table:   table,
		paths:   listener.NewPathNormalizer(o.Spec.Paths),
		trusted: trusted,
		obs:     s.deps.Observer,
		log:     s.deps.Logger,
	}
	if h.obs != nil {
		h.noRoute = s.stats.Route(key, "", "")
	}
	if o.Spec.Egress != nil {
		if err := s.newEgress(h, o); err != nil {
			return nil, fieldError(o.Source, ref, "spec.egress", err)
		}
	}
	// Rules with a forward action take the listener's body limit unless they set one.
	return h, nil
}

// locateRule finds the Route resource and field path of a compiled rule.
func (s *Snapshot) locateRule(cr *compiledRule) (config.Source, string, string, bool) {
	for _, o := range s.Set.Routes {
		for i := range o.Spec.Rules {
			name := fmt.Sprintf("%s/%s#%d", o.Meta.Namespace, o.Meta.Name, i)
			if r := o.Spec.Rules[i].Name; r != "" {
				name = fmt.Sprintf("%s/%s#%s", o.Meta.Namespace, o.Meta.Name, r)
			}
			if name == cr.name {
				return o.Source, o.Ref(config.KindRoute), fmt.Sprintf("spec.rules[%d]", i), true
			}
		}
	}
	return config.Source{}, "", "", false
}

func (h *listenerHandler) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// exchange is the per-request state: the Info the proxy fills in and the
// response recorder, in one allocation.
type exchange struct {
	info proxy.Info
	rec  recorder
}

func (h *listenerHandler) serve(w http.ResponseWriter, r *http.Request) {
	x := &exchange{}
	x.info.Start = time.Now()
	x.info.Listener = h.name
	x.rec.ResponseWriter = w
	info := &x.info
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		info.PeerIP = ap.Addr()
	}
	info.TrustedPeer = len(h.trusted) > 0 && h.isTrusted(info.PeerIP)
	info.ClientIP = info.PeerIP
	if info.TrustedPeer {
		info.ClientIP = proxy.ClientIPFrom(info.PeerIP, r.Header, h.isTrusted)
	}
	info.Scheme, info.Host = h.scheme, r.Host
	if h.egress != nil {
		h.serveEgress(x, r)
		return
	}

	escaped := r.URL.EscapedPath()
	path, reason, ok := h.paths.Normalize(escaped)
	if !ok {
		h.security("path_rejected", r, reason)
		h.finish(x, r, &filter.Error{Status: http.StatusBadRequest, Reason: "bad_path"}, h.noRoute)
		return
	}
	host := hostOnly(r.Host)
	cr, _, found := h.table.Match(host, path, r)
	if !found {
		h.finish(x, r, &filter.Error{Status: http.StatusNotFound, Reason: "no_route"}, h.noRoute)
		return
	}
	info.Route = cr.name
	ctx := proxy.WithInfo(r.Context(), info)
	var span trace.Span
	if h.obs != nil {
		ctx, span = h.obs.StartSpanFrom(ctx, r, cr.name)
	}
	r2 := r.WithContext(ctx)
	if path != escaped {
		// Routing saw the normal form; the upstream gets it too, so that what was
		// checked is what is served.
		u := *r.URL
		u.Path, u.RawPath = path, path
		if p, err := url.PathUnescape(path); err == nil {
			u.Path = p
		}
		r2.URL = &u
	}
	err := cr.handler.ServeHTTP(&x.rec, r2)
	abort := h.finish(x, r2, err, cr.stats)
	if span != nil {
		observe.EndSpan(span, x.rec.status, x.info.Reason)
	}
	if abort {
		// Too late for a status: abort so the client sees a broken stream rather
		// than a complete-looking one.
		panic(http.ErrAbortHandler)
	}
}

// finish answers an error if one is left, and records metrics and the access log.
// It reports whether the response had already started, so the stream must be
// aborted.
func (h *listenerHandler) finish(x *exchange, r *http.Request, err error, stats routeStats) (abort bool) {
	if err != nil {
		status, reason := filter.StatusOf(err)
		if x.info.Reason == "" {
			x.info.Reason = reason
		}
		switch {
		case status == 499:
			// The client is gone; nothing to answer.
			x.rec.status = 499
		case x.rec.wroteHeader:
			abort = true
		default:
			writeError(&x.rec, r, status, reason)
		}
		if status >= 500 && status != 499 {
			h.log.Debug("request failed", "route", x.info.Route, "status", status, "reason", reason, "err", err)
		}
		if h.obs != nil {
			h.obs.LocalReply(h.name, x.info.Route, reason)
		}
	}
	code := x.rec.status
	if code == 0 {
		code = http.StatusOK
	}
	dur := time.Since(x.info.Start)
	bytesIn, bytesOut := max(r.ContentLength, 0), x.rec.bytes
	if code == http.StatusSwitchingProtocols || (r.Method == http.MethodConnect && h.egress != nil) {
		// An upgrade (or an egress CONNECT) is recorded when its tunnel ends:
		// its life, and the bytes it carried each way.
		bytesIn, bytesOut = x.info.TunnelBytesIn, x.info.TunnelBytesOut
	}
	if stats != nil {
		stats.Done(code, dur, bytesIn, bytesOut)
	}
	if h.obs != nil && h.obs.AccessEnabled(code) {
		// Request headers go into the record of a failed request only: they are
		// what one needs to see why it failed, and on every line of "all" mode
		// they cost more than the rest of the record (docs/performance.md).
		var headers http.Header
		if code >= 400 || x.info.Reason != "" {
			headers = r.Header
		}
		h.obs.Access(&observe.AccessRecord{
			Time: x.info.Start, Remote: x.info.ClientIP.String(), Method: r.Method, Host: r.Host,
			Path: r.URL.RequestURI(), Proto: r.Proto, Status: code, BytesIn: bytesIn,
			BytesOut: bytesOut, Duration: dur, Route: x.info.Route, Cluster: x.info.Cluster,
			Upstream: x.info.Upstream, TraceID: observe.TraceID(r.Context()), Reason: x.info.Reason,
			UserAgent: r.UserAgent(), Referer: r.Referer(), Headers: headers, Identity: peerIdentity(r),
		})
	}
	return abort
}

func (h *listenerHandler) security(kind string, r *http.Request, detail string) {
	if h.obs != nil {
		h.obs.SecurityEvent(kind, r.RemoteAddr, detail)
	}
}

// writeError answers a failure: for gRPC clients as a gRPC status (HTTP 200 with
// grpc-status, as gRPC requires), for others as a short text body.
func writeError(w http.ResponseWriter, r *http.Request, status int, reason string) {
	h := w.Header()
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		h.Set("Content-Type", "application/grpc")
		code := grpcCode(status)
		if reason == "upstream_timeout" {
			code = 4 // DEADLINE_EXCEEDED
		}
		h.Set("Grpc-Status", strconv.Itoa(code))
		h.Set("Grpc-Message", reason)
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	if (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "1") // unless a filter (a rate limit) knows better
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, "%d %s: %s\n", status, http.StatusText(status), reason)
}

// grpcCode maps an HTTP status to the gRPC code a client should see (the table of
// the gRPC HTTP/2 protocol spec, "HTTP to gRPC status code mapping").
func grpcCode(status int) int {
	switch status {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	case 413:
		return 8 // RESOURCE_EXHAUSTED
	}
	return 2 // UNKNOWN
}

// hostOnly lower-cases the host and drops a port.
func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// recorder notes the status and bytes of a response.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (rw *recorder) WriteHeader(code int) {
	// 101 is final for this exchange: the connection changes protocol after it.
	if !rw.wroteHeader && (code >= 200 || code == http.StatusSwitchingProtocols) {
		rw.wroteHeader = true
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if !rw.wroteHeader {
		rw.wroteHeader, rw.status = true, http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.bytes += int64(n)
	return n, err
}

func (rw *recorder) Flush() {
	if !rw.wroteHeader {
		rw.wroteHeader, rw.status = true, http.StatusOK
	}
	if f, ok := rw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// peerIdentity is the caller's identity from its client certificate (mTLS): the
// SPIFFE ID (URI SAN) when there is one, else the subject's common name.
func peerIdentity(r *http.Request) string {
	st := listener.TLSState(r)
	if st == nil || len(st.PeerCertificates) == 0 {
		return ""
	}
	c := st.PeerCertificates[0]
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	return c.Subject.CommonName
}
