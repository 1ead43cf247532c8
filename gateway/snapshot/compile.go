package snapshot

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
	"github.com/portcullis/portcullis/gateway/route"
	"github.com/portcullis/portcullis/gateway/transport"
	"github.com/portcullis/portcullis/gateway/upstream"
)

// Compile builds a snapshot from a validated set. prev, the running snapshot (or
// nil), lends the upstreams whose spec did not change, so their health and pooled
// connections survive the reload. On error nothing new is left running. The error
// names file, line and field.
func Compile(set *config.Set, version string, prev *Snapshot, deps Deps) (*Snapshot, error) {
	if deps.Logger == nil {
		deps.Logger = discardLogger()
	}
	s := &Snapshot{
		Version:   version,
		Set:       set,
		Listeners: map[string]config.ListenerSpec{},
		handlers:  map[string]*listenerHandler{},
		upstreams: map[string]*upstreamEntry{},
		specs:     map[string]config.ClusterSpec{},
		deps:      deps,
	}
	if deps.Observer != nil {
		s.stats = deps.Observer.NewLease()
	}
	if len(set.Telemetry) > 0 {
		s.Telemetry = set.Telemetry[0].Spec
	}
	ok := false
	defer func() {
		if !ok {
			s.Discard(prev)
		}
	}()
	for _, o := range set.Clusters {
		key := o.Meta.Namespace + "/" + o.Meta.Name
		digest := specDigest(o.Spec) + clusterFilesDigest(o.Spec)
		s.specs[key] = o.Spec
		if prev != nil {
			if pe, found := prev.upstreams[key]; found && pe.digest == digest {
				s.upstreams[key] = pe
				s.stats.Upstream(key) // hold its series too: prev releases its own
				continue
			}
		}
		up, err := s.newUpstream(key, o)
		if err != nil {
			return nil, err
		}
		s.upstreams[key] = &upstreamEntry{digest: digest, up: up}
	}
	rules := map[string][]route.Rule[*compiledRule]{}
	for _, o := range set.Routes {
		for i := range o.Spec.Rules {
			cr, err := s.compileRule(o, i)
			if err != nil {
				return nil, err
			}
			for _, l := range o.Spec.Listeners {
				key := o.Meta.Namespace + "/" + l
				rules[key] = append(rules[key], route.Rule[*compiledRule]{Hosts: o.Spec.Hosts, Match: o.Spec.Rules[i].Match, Value: cr})
			}
		}
	}
	for _, o := range set.Listeners {
		key := o.Meta.Namespace + "/" + o.Meta.Name
		s.Listeners[key] = o.Spec
		h, err := s.newListenerHandler(key, o, rules[key])
		if err != nil {
			return nil, err
		}
		s.handlers[key] = h
	}
	ok = true
	return s, nil
}

// fieldError positions an error at field of a resource.
func fieldError(src config.Source, ref, field string, err error) error {
	var ce *config.Error
	if errors.As(err, &ce) {
		if ce.Resource == "" {
			ce.Resource = ref
		}
		if ce.File == "" {
			// Built without a place (a factory's own check): put it at the field.
			ce.File = src.File
			ce.Line, ce.Column = src.Pos(field)
			if ce.Field == "" {
				ce.Field = field
			} else {
				ce.Field = field + "." + ce.Field
			}
		}
		return ce
	}
	l, c := src.Pos(field)
	return &config.Error{File: src.File, Line: l, Column: c, Resource: ref, Field: field, Msg: err.Error()}
}

func (s *Snapshot) newUpstream(key string, o *config.Object[config.ClusterSpec]) (*proxy.Upstream, error) {
	ref := o.Ref(config.KindCluster)
	sp := o.Spec
	if sp.Registry != nil && !s.deps.FromControlPlane {
		return nil, fieldError(o.Source, ref, "spec.registry", fmt.Errorf(
			"registry discovery needs the control plane, which fills in the healthy endpoints of service %q in every push; "+
				"a proxy run from files cannot resolve it (list endpoints, or use dns)", sp.Registry.Service))
	}
	topts := transport.Options{Protocol: sp.Protocol}
	if sp.ConnectTimeout != nil {
		topts.ConnectTimeout = sp.ConnectTimeout.D()
	}
	topts.MaxIdle = sp.Pool.MaxIdlePerEndpoint
	if sp.Pool.IdleTimeout != nil {
		topts.IdleTimeout = sp.Pool.IdleTimeout.D()
	}
	if sp.TLS != nil {
		cfg, err := upstreamTLS(sp.TLS)
		if err != nil {
			return nil, fieldError(o.Source, ref, "spec.tls", err)
		}
		if cfg.ServerName == "" && sp.DNS != nil {
			cfg.ServerName = sp.DNS.Name // verify the name that was resolved
		}
		if sp.TLS.InsecureSkipVerify {
			s.deps.Logger.Warn("upstream certificate checks are disabled (tls.insecureSkipVerify)", "cluster", key)
		}
		topts.TLS = cfg
	}
	var c *upstream.Cluster
	topts.AcquireConn = func() (func(), bool) { return c.AcquireConn() }
	probeScheme := "http"
	if sp.TLS != nil {
		probeScheme = "https"
	}
	opts := upstream.Options{
		Logger:  s.deps.Logger,
		NewPool: func(addr string) io.Closer { return transport.New(addr, topts) },
		Probe:   probe(probeScheme),
	}
	if s.deps.Observer != nil {
		opts.Observer = s.deps.Observer // a nil *Observer must not become a non-nil interface
	}
	c, err := upstream.New(key, sp, opts)
	if err != nil {
		var fe *upstream.FieldError
		if errors.As(err, &fe) {
			return nil, fieldError(o.Source, ref, "spec."+fe.Field, fe.Err)
		}
		return nil, fieldError(o.Source, ref, "spec", err)
	}
	up := &proxy.Upstream{Cluster: c}
	if s.deps.Observer != nil {
		up.Stats = s.stats.Upstream(key)
	}
	return up, nil
}

// probe returns the active health check: a GET of path on the endpoint's own pool.
func probe(scheme string) upstream.ProbeFunc {
	return func(ctx context.Context, ep *upstream.Endpoint, path string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+ep.Addr+path, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("User-Agent", "portcullis-health-check")
		pool, ok := ep.Pool.(transport.Pool)
		if !ok {
			return 0, errors.New("endpoint has no connection pool")
		}
		resp, err := pool.RoundTrip(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return resp.StatusCode, nil
	}
}

func upstreamTLS(t *config.UpstreamTLS) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caFile: %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("certFile/keyFile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// compiledRule is one route rule ready to serve.
type compiledRule struct {
	name    string // "namespace/route#index" or "#name"
	cluster string // first backend, for metrics labels
	handler filter.Handler
	stats   routeStats
}

type routeStats interface {
	Done(code int, total time.Duration, bytesIn, bytesOut int64)
}

func (s *Snapshot) compileRule(o *config.Object[config.RouteSpec], i int) (*compiledRule, error) {
	r := &o.Spec.Rules[i]
	ref := o.Ref(config.KindRoute)
	field := fmt.Sprintf("spec.rules[%d]", i)
	name := fmt.Sprintf("%s/%s#%d", o.Meta.Namespace, o.Meta.Name, i)
	if r.Name != "" {
		name = fmt.Sprintf("%s/%s#%s", o.Meta.Namespace, o.Meta.Name, r.Name)
	}
	cr := &compiledRule{name: name}
	var terminal filter.Handler
	switch {
	case r.Forward != nil:
		backends := make([]proxy.Backend, 0, len(r.Forward.Backends))
		for _, b := range r.Forward.Backends {
			e := s.upstreams[o.Meta.Namespace+"/"+b.Cluster]
			w := 1
			if b.Weight != nil {
				w = *b.Weight
			}
			if w > 0 {
				backends = append(backends, proxy.Backend{Upstream: e.up, Weight: w})
			}
		}
		cr.cluster = o.Meta.Namespace + "/" + r.Forward.Backends[0].Cluster
		prefix := ""
		if r.Match.Path != nil {
			prefix = r.Match.Path.Prefix
		}
		fw, err := proxy.NewForwarder(r.Forward, backends, prefix, s.bodyLimit(o))
		if err != nil {
			var pe *proxy.FieldError
			if errors.As(err, &pe) {
				return nil, fieldError(o.Source, ref, field+".forward."+pe.Field, pe.Err)
			}
			return nil, fieldError(o.Source, ref, field+".forward", err)
		}
		if s.deps.Observer != nil {
			fw.SetInjector(s.deps.Observer.Inject)
		}
		terminal = fw
	case r.Redirect != nil:
		terminal = newRedirect(r.Redirect, r.Match.Path)
	case r.DirectResponse != nil:
		terminal = newDirect(r.DirectResponse)
	}
	var timeout *config.Duration
	if r.Forward != nil {
		timeout = r.Forward.Timeout
	}
	filters, err := s.buildFilters(o.Source, ref, field+".filters", r.Filters, name, upstreamLookup{s, o.Meta.Namespace, timeout})
	if err != nil {
		return nil, err
	}
	cr.handler = filter.Chain(filters, terminal)
	if s.deps.Observer != nil {
		l := ""
		if len(o.Spec.Listeners) > 0 {
			l = o.Meta.Namespace + "/" + o.Spec.Listeners[0]
		}
		cr.stats = s.stats.Route(l, name, cr.cluster)
	}
	return cr, nil
}

// buildFilters builds one chain's filters (a Route rule's, or an egress
// listener's) with the registered factories, in order. field is the path of
// the list ("spec.rules[0].filters"); errors name its items' type or config.
// Filters that implement io.Closer are closed with the snapshot.
func (s *Snapshot) buildFilters(src config.Source, ref, field string, specs []config.FilterSpec, route string, ups filter.Upstreams) ([]filter.Filter, error) {
	filters := make([]filter.Filter, 0, len(specs))
	for j, fs := range specs {
		ff := fmt.Sprintf("%s[%d]", field, j)
		factory, ok := filter.Lookup(fs.Type)
		if !ok {
			return nil, fieldError(src, ref, ff+".type", fmt.Errorf("unknown filter type %q (this build has: %s)", fs.Type, strings.Join(filter.Types(), ", ")))
		}
		b := filter.Build{Config: fs.Config, Route: route, Upstreams: ups, Logger: s.deps.Logger, DataDir: s.deps.DataDir}
		if s.deps.Observer != nil {
			b.Events = s.deps.Observer
		}
		f, err := factory(b)
		if err != nil {
			return nil, fieldError(src, ref, ff+".config", err)
		}
		if c, ok := f.(io.Closer); ok {
			s.closers = append(s.closers, c)
		}
		filters = append(filters, f)
	}
	return filters, nil
}

// upstreamLookup resolves clusters for filters (mirror, auth calls, transcoding)
// in the namespace of the route. Their requests are bounded by the rule's
// forward.timeout when it has one (so a streaming route's long timeout covers the
// streams a filter opens), else by the default.
type upstreamLookup struct {
	s       *Snapshot
	ns      string
	timeout *config.Duration
}

func (u upstreamLookup) Upstream(name string) (filter.Handler, bool) {
	e, ok := u.s.upstreams[u.ns+"/"+name]
	if !ok {
		return nil, false
	}
	fw, err := proxy.NewForwarder(&config.Forward{Timeout: u.timeout}, []proxy.Backend{{Upstream: e.up, Weight: 1}}, "", 0)
	if err != nil {
		return nil, false
	}
	if u.s.deps.Observer != nil {
		fw.SetInjector(u.s.deps.Observer.Inject)
	}
	return ownInfo{fw}, true
}

// ownInfo gives a side request (mirror, auth call) its own proxy.Info, carrying the
// client's details, so that it never writes into the primary request's record.
type ownInfo struct{ next filter.Handler }

func (o ownInfo) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	info := &proxy.Info{Start: time.Now()}
	if parent := proxy.InfoFrom(r.Context()); parent != nil {
		info.Forwarding, info.Listener, info.Route = parent.Forwarding, parent.Listener, parent.Route
	}
	return o.next.ServeHTTP(w, r.WithContext(proxy.WithInfo(r.Context(), info)))
}

func parseTrusted(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, c := range list {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(c)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// bodyLimit is the smallest request-body limit of the listeners a route attaches
// to (0: the default), used where a rule sets none of its own.
func (s *Snapshot) bodyLimit(o *config.Object[config.RouteSpec]) int64 {
	var limit int64
	for _, name := range o.Spec.Listeners {
		for _, l := range s.Set.Listeners {
			if l.Meta.Namespace == o.Meta.Namespace && l.Meta.Name == name {
				if n := l.Spec.Limits.MaxRequestBodyBytes; n > 0 && (limit == 0 || n < limit) {
					limit = n
				}
			}
		}
	}
	return limit
}

// clusterFilesDigest covers the contents of the files a cluster names, so that a
// renewed client certificate or CA bundle rebuilds the cluster on reload.
func clusterFilesDigest(sp config.ClusterSpec) string {
	var b []byte
	if t := sp.TLS; t != nil {
		for _, p := range []string{t.CAFile, t.CertFile, t.KeyFile} {
			if p != "" {
				data, _ := os.ReadFile(p)
				b = append(b, data...)
			}
		}
	}
	if sc := sp.LoadBalancer.StickyCookie; sc != nil && sc.SecretFile != "" {
		data, _ := os.ReadFile(sc.SecretFile)
		b = append(b, data...)
	}
	if len(b) == 0 {
		return ""
	}
	return Digest(b)
}
