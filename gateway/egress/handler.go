package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/listener"
	"github.com/portcullis/portcullis/gateway/observe"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// Defaults of config.ListenerEgress.
const (
	DefaultResolveTimeout    = 2 * time.Second
	DefaultConnectTimeout    = 5 * time.Second
	DefaultRequestTimeout    = 30 * time.Second
	DefaultTunnelIdleTimeout = time.Hour
)

// Reasons of refusals after the policy allowed a request.
const (
	ReasonAddressRefused = "egress_address_refused" // the SSRF guard refused the resolved address (403)
	ReasonBadRequest     = "egress_bad_request"     // no destination could be read from the request (400)
	ReasonResolveFailed  = "egress_resolve_failed"  // the name did not resolve (502)
	ReasonConnectFailed  = "egress_connect_failed"  // no checked address accepted a connection (502)
	ReasonTLSFailed      = "egress_tls_failed"      // TLS origination failed (502)
	ReasonTimeout        = "egress_timeout"         // the connection or exchange took too long (504)
	ReasonConnectHTTP2   = "egress_connect_needs_http1"
)

// Handler serves the requests of one egress listener. It implements
// filter.Handler: failures are returned as *filter.Error for the core to
// answer and log. Safe for concurrent use; Close it when its snapshot retires.
type Handler struct {
	listener     string // "namespace/name"
	ns           string
	catalog      *Catalog
	guard        guard
	dialer       Dialer
	tlsByService map[string]*tls.Config // services with originateTLS

	connectTimeout, requestTimeout, tunnelIdle time.Duration

	filters   []filter.Filter
	send      filter.Handler // filters, then forward: what an allowed HTTP request goes through
	transport *http.Transport
	obs       *observe.Observer
	log       *slog.Logger
	decisions *prometheus.CounterVec
}

var _ filter.Handler = (*Handler)(nil)

// Option sets an optional part of a Handler.
type Option func(*Handler)

// WithResolver replaces the DNS resolver (default net.DefaultResolver).
func WithResolver(r Resolver) Option { return func(h *Handler) { h.guard.resolver = r } }

// WithDialer replaces the dialer (default a net.Dialer with TCP keep-alive). It
// is always called with an IP address the guard checked, never a name.
func WithDialer(d Dialer) Option { return func(h *Handler) { h.dialer = d } }

// WithObserver records decisions as metrics and denials as security events;
// role is the metrics' role label. Nil (the default): denials go to the logger.
func WithObserver(o *observe.Observer, role string) Option {
	return func(h *Handler) {
		if o != nil {
			h.obs = o
			h.decisions = decisionCounter(o.Registry(), role)
		}
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.log = l } }

// WithFilters runs filters, in order, on every HTTP request the policy allowed
// and the guard checked, just before it is forwarded (spec.egress.filters;
// credexchange adds the external credential there). Their errors are returned
// from ServeHTTP as they are. CONNECT never runs them: the tunnel carries the
// caller's own TLS. A filter may change the request's header, path and query;
// the destination stays the checked one whatever it does to Host or URL.
// Default: none. The caller owns the filters (and closes them).
func WithFilters(filters ...filter.Filter) Option {
	return func(h *Handler) { h.filters = filters }
}

// New builds the handler of the egress listener lo from the ExternalServices
// and EgressPolicies of its namespace in set. It reads the CA files of the
// services that originate TLS; an unreadable one is a config error naming the
// service's spec.caFile.
func New(set *config.Set, lo *config.Object[config.ListenerSpec], opts ...Option) (*Handler, error) {
	ns := lo.Meta.Namespace
	spec := config.ListenerEgress{}
	if lo.Spec.Egress != nil {
		spec = *lo.Spec.Egress
	}
	h := &Handler{
		listener:       ns + "/" + lo.Meta.Name,
		ns:             ns,
		catalog:        NewCatalog(set, ns),
		guard:          guard{resolver: net.DefaultResolver, timeout: orDefault(spec.ResolveTimeout, DefaultResolveTimeout)},
		dialer:         &net.Dialer{KeepAlive: 30 * time.Second},
		tlsByService:   map[string]*tls.Config{},
		connectTimeout: orDefault(spec.ConnectTimeout, DefaultConnectTimeout),
		requestTimeout: orDefault(spec.RequestTimeout, DefaultRequestTimeout),
		tunnelIdle:     orDefault(spec.TunnelIdleTimeout, DefaultTunnelIdleTimeout),
		log:            slog.New(slog.DiscardHandler),
	}
	for _, o := range set.ExternalServices {
		if o.Meta.Namespace != ns || !o.Spec.OriginateTLS {
			continue
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
		if o.Spec.CAFile != "" {
			pool, err := loadPool(o.Spec.CAFile)
			if err != nil {
				line, col := o.Source.Pos("spec.caFile")
				return nil, &config.Error{File: o.Source.File, Line: line, Column: col, Resource: o.Ref(config.KindExternalService), Field: "spec.caFile", Msg: err.Error()}
			}
			cfg.RootCAs = pool
		}
		h.tlsByService[ns+"/"+o.Meta.Name] = cfg
	}
	for _, opt := range opts {
		opt(h)
	}
	h.send = filter.Chain(h.filters, filter.HandlerFunc(h.forwardChecked))
	h.transport = &http.Transport{
		Proxy:                 nil, // the egress is the last proxy: never chain to one from the environment
		DialContext:           h.dialForTransport,
		DialTLSContext:        h.dialTLSForTransport,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: h.requestTimeout,
		DisableCompression:    true, // pass the client's Accept-Encoding and the body as they are
	}
	return h, nil
}

func orDefault(d *config.Duration, def time.Duration) time.Duration {
	if d == nil || d.D() == 0 {
		return def
	}
	return d.D()
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// Close closes the pooled connections to external services.
func (h *Handler) Close() error {
	h.transport.CloseIdleConnections()
	return nil
}

// destination is what a request asks to reach.
type destination struct {
	host    string // lower case, IPv6 without brackets
	port    int    // 0: the request named none
	connect bool
}

// destinationOf reads the destination of a CONNECT (authority-form, port
// required), an absolute-form http request, or an origin-form request (Host).
func destinationOf(r *http.Request) (destination, error) {
	switch {
	case r.Method == http.MethodConnect:
		host, port, err := net.SplitHostPort(r.Host)
		if err != nil {
			return destination{}, fmt.Errorf("CONNECT needs host:port, got %q", r.Host)
		}
		return parsedDestination(host, port, true)
	case r.URL.IsAbs():
		if r.URL.Scheme != "http" {
			return destination{}, fmt.Errorf("absolute-form %s:// is not proxied: use CONNECT for TLS, or http:// with an ExternalService that originates TLS", r.URL.Scheme)
		}
		return splitAuthority(r.URL.Host)
	default:
		return splitAuthority(r.Host)
	}
}

func splitAuthority(a string) (destination, error) {
	if a == "" {
		return destination{}, errors.New("the request names no host")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		// No port (or a bare IPv6 literal in brackets).
		return parsedDestination(strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), "", false)
	}
	return parsedDestination(host, port, false)
}

func parsedDestination(host, port string, connect bool) (destination, error) {
	d := destination{host: strings.ToLower(host), connect: connect}
	if d.host == "" || strings.ContainsAny(d.host, "/@%") {
		return destination{}, fmt.Errorf("%q is not a host", host)
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return destination{}, fmt.Errorf("%q is not a port", port)
		}
		d.port = n
	}
	return d, nil
}

// CallerID returns the caller's SPIFFE ID from its verified client certificate
// (the first spiffe:// URI SAN), or "" for an anonymous caller.
func CallerID(r *http.Request) string {
	st := listener.TLSState(r)
	if st == nil || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return ""
	}
	for _, u := range st.PeerCertificates[0].URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}

// ServeHTTP decides the request and, if allowed, tunnels or forwards it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	dest, err := destinationOf(r)
	if err != nil {
		return &filter.Error{Status: http.StatusBadRequest, Reason: ReasonBadRequest, Err: err}
	}
	caller := CallerID(r)
	svc, port, ok := h.catalog.Match(dest.host, dest.port)
	if !ok {
		h.record("", Decision{Result: Deny, Reason: ReasonUnknownDestination})
		h.denied(r, caller, "", dest.host, dest.port, ReasonUnknownDestination, "")
		return &filter.Error{Status: http.StatusForbidden, Reason: ReasonUnknownDestination}
	}
	info := proxy.InfoFrom(r.Context())
	if info != nil {
		info.Route, info.Cluster = "egress:"+svc.Name, svc.Name
	}
	d := h.catalog.Decide(caller, svc, r.Method, r.URL.Path)
	switch d.Result {
	case Deny:
		h.record(svc.Name, d)
		h.denied(r, caller, svc.Name, dest.host, port, d.Reason, "")
		return &filter.Error{Status: http.StatusForbidden, Reason: d.Reason}
	case Report:
		h.log.Warn("egress policy would deny this request (report mode): allowed", "event", "egress_report",
			"listener", h.listener, "caller", callerLabel(caller), "service", svc.Name, "policy", d.Policy,
			"method", r.Method, "host", dest.host, "port", port, "reason", d.Reason)
	}
	addrs, err := h.guard.resolve(r.Context(), dest.host, svc.spec.AllowPrivateAddresses)
	if err != nil {
		var ae *AddressError
		if errors.As(err, &ae) {
			h.record(svc.Name, Decision{Result: Deny, Reason: ReasonAddressRefused})
			h.denied(r, caller, svc.Name, dest.host, port, ReasonAddressRefused, ae.Error())
			return &filter.Error{Status: http.StatusForbidden, Reason: ReasonAddressRefused, Err: err}
		}
		h.record(svc.Name, Decision{Result: d.Result, Reason: ReasonResolveFailed})
		return &filter.Error{Status: http.StatusBadGateway, Reason: ReasonResolveFailed, Err: err}
	}
	h.record(svc.Name, d)
	t := &target{svc: svc, host: dest.host, port: port, addrs: addrs}
	if dest.connect {
		return h.tunnel(w, r, t, info)
	}
	// The checked target rides in the context, under a key only this package
	// can write, to the end of the filter chain (forwardChecked).
	return h.send.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, t)))
}

func callerLabel(id string) string {
	if id == "" {
		return "anonymous"
	}
	return id
}

// denied records a refusal as a security event. Nothing from the request but
// the destination, method and caller identity is written: no header, no query.
func (h *Handler) denied(r *http.Request, caller, svc, host string, port int, reason, detail string) {
	msg := fmt.Sprintf("egress %s: caller=%s method=%s destination=%s service=%s",
		reason, callerLabel(caller), r.Method, net.JoinHostPort(host, strconv.Itoa(port)), svc)
	if detail != "" {
		msg += " (" + detail + ")"
	}
	if h.obs != nil {
		h.obs.SecurityEvent(observe.SecurityPolicyDenied, r.RemoteAddr, msg)
		return
	}
	h.log.Warn("security event", "event", "security", "kind", observe.SecurityPolicyDenied, "remote", r.RemoteAddr, "detail", msg)
}

// decisionCounter registers portcullis_egress_decisions_total, or returns the
// one a previous snapshot of the same gateway registered.
func decisionCounter(reg prometheus.Registerer, role string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "portcullis", Name: "egress_decisions_total",
		Help:        "Egress requests by namespace, external service (empty: unknown destination), decision (allow, deny, report) and reason.",
		ConstLabels: prometheus.Labels{"role": role},
	}, []string{"namespace", "external_service", "decision", "reason"})
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		panic("egress: " + err.Error())
	}
	return c
}

func (h *Handler) record(svc string, d Decision) {
	if h.decisions != nil {
		h.decisions.WithLabelValues(h.ns, strings.TrimPrefix(svc, h.ns+"/"), d.Result, d.Reason).Inc()
	}
}
