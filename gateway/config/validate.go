package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Validate checks every resource of the set on its own and against the others
// (names unique per kind and namespace, references resolved). It returns every
// error found, joined, each naming file, line and field. It does not compile
// regular expressions or path templates; the compiler does, with the same errors.
func Validate(s *Set) error {
	v := &validator{}
	clusters := index(s.Clusters)
	listeners := index(s.Listeners)
	externals := index(s.ExternalServices)
	workloads := index(s.Workloads)
	v.unique(KindListener, s.Listeners)
	v.unique(KindRoute, s.Routes)
	v.unique(KindCluster, s.Clusters)
	v.unique(KindTelemetry, s.Telemetry)
	v.unique(KindExternalService, s.ExternalServices)
	v.unique(KindEgressPolicy, s.EgressPolicies)
	v.unique(KindAuthorizationPolicy, s.AuthorizationPolicies)
	v.unique(KindWorkload, s.Workloads)

	plainHTTP := false // a listener that can answer ACME HTTP-01 challenges
	for _, o := range s.Listeners {
		plainHTTP = plainHTTP || o.Spec.Protocol == ProtocolHTTP || (o.Spec.Protocol == "" && o.Spec.TLS == nil)
	}
	addrs := map[string]string{}
	for _, o := range s.Listeners {
		v.listener(o, plainHTTP)
		if prev, ok := addrs[o.Spec.Address]; ok && o.Spec.Address != "" {
			v.fail(o.Source, o.Ref(KindListener), "spec.address", fmt.Sprintf("%s is already used by Listener %s", o.Spec.Address, prev))
		}
		addrs[o.Spec.Address] = o.Meta.Namespace + "/" + o.Meta.Name
	}
	for _, o := range s.Routes {
		v.route(o, listeners, clusters)
	}
	for _, o := range s.Clusters {
		v.cluster(o)
	}
	if len(s.Telemetry) > 1 {
		o := s.Telemetry[1]
		v.fail(o.Source, o.Ref(KindTelemetry), "", "at most one Telemetry resource may be given")
	}
	for _, o := range s.Telemetry {
		v.telemetry(o)
	}
	for _, o := range s.ExternalServices {
		v.external(o)
	}
	for _, o := range s.EgressPolicies {
		v.egressPolicy(o, externals)
	}
	for _, o := range s.AuthorizationPolicies {
		v.authzPolicy(o, workloads)
	}
	for _, o := range s.Workloads {
		v.workload(o)
	}
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) fail(src Source, ref, field, msg string) {
	l, c := src.Pos(field)
	v.errs = append(v.errs, &Error{File: src.File, Line: l, Column: c, Resource: ref, Field: field, Msg: msg})
}

func index[S any](list []*Object[S]) map[string]*Object[S] {
	m := make(map[string]*Object[S], len(list))
	for _, o := range list {
		m[o.Meta.Namespace+"/"+o.Meta.Name] = o
	}
	return m
}

func unique[S any](v *validator, kind string, list []*Object[S]) {
	seen := map[string]bool{}
	for _, o := range list {
		k := o.Meta.Namespace + "/" + o.Meta.Name
		if seen[k] {
			v.fail(o.Source, o.Ref(kind), "metadata.name", "defined more than once")
		}
		seen[k] = true
	}
}

func (v *validator) unique(kind string, list any) {
	switch l := list.(type) {
	case []*Object[ListenerSpec]:
		unique(v, kind, l)
	case []*Object[RouteSpec]:
		unique(v, kind, l)
	case []*Object[ClusterSpec]:
		unique(v, kind, l)
	case []*Object[TelemetrySpec]:
		unique(v, kind, l)
	case []*Object[ExternalServiceSpec]:
		unique(v, kind, l)
	case []*Object[EgressPolicySpec]:
		unique(v, kind, l)
	case []*Object[AuthorizationPolicySpec]:
		unique(v, kind, l)
	case []*Object[WorkloadSpec]:
		unique(v, kind, l)
	}
}

func (v *validator) listener(o *Object[ListenerSpec], plainHTTP bool) {
	ref, sp := o.Ref(KindListener), &o.Spec
	f := func(field, msg string) { v.fail(o.Source, ref, field, msg) }
	if err := checkHostPort(sp.Address, false); err != nil {
		f("spec.address", err.Error())
	}
	switch sp.Protocol {
	case "":
	case ProtocolHTTP, ProtocolH2C:
		if sp.TLS != nil {
			f("spec.tls", "tls is only for protocol HTTPS")
		}
	case ProtocolHTTPS:
		if sp.TLS == nil {
			f("spec.tls", "required for protocol HTTPS")
		}
	default:
		f("spec.protocol", fmt.Sprintf("%q is not one of HTTP, HTTPS, H2C", sp.Protocol))
	}
	if t := sp.TLS; t != nil {
		listenerTLS(f, t, plainHTTP)
	}
	l := sp.Limits
	for field, n := range map[string]int64{"maxConnections": int64(l.MaxConnections), "maxRequestHeaderBytes": int64(l.MaxRequestHeaderBytes),
		"maxRequestHeaders": int64(l.MaxRequestHeaders), "maxConcurrentStreams": int64(l.MaxConcurrentStreams), "maxRequestBodyBytes": l.MaxRequestBodyBytes} {
		if n < 0 {
			f("spec.limits."+field, "must not be negative")
		}
	}
	for i, c := range sp.TrustedProxies {
		if _, err := netip.ParsePrefix(c); err != nil {
			if _, err2 := netip.ParseAddr(c); err2 != nil {
				f(fmt.Sprintf("spec.trustedProxies[%d]", i), fmt.Sprintf("%q is not a CIDR or IP address", c))
			}
		}
	}
	switch sp.Paths.EscapedSlashes {
	case "", EscapedSlashesReject, EscapedSlashesKeep, EscapedSlashesDecode:
	default:
		f("spec.paths.escapedSlashes", fmt.Sprintf("%q is not one of reject, keep, decode", sp.Paths.EscapedSlashes))
	}
	if sp.Egress != nil {
		listenerEgress(f, sp.Egress)
	}
}

func (v *validator) route(o *Object[RouteSpec], listeners map[string]*Object[ListenerSpec], clusters map[string]*Object[ClusterSpec]) {
	ref, sp := o.Ref(KindRoute), &o.Spec
	f := func(field, msg string) { v.fail(o.Source, ref, field, msg) }
	if len(sp.Listeners) == 0 {
		f("spec.listeners", "at least one listener is required")
	}
	for i, l := range sp.Listeners {
		switch lo := listeners[o.Meta.Namespace+"/"+l]; {
		case lo == nil:
			f(fmt.Sprintf("spec.listeners[%d]", i), fmt.Sprintf("no Listener %q in namespace %q", l, o.Meta.Namespace))
		case lo.Spec.Egress != nil:
			f(fmt.Sprintf("spec.listeners[%d]", i), fmt.Sprintf("Listener %q is an egress listener: its requests are decided by ExternalService and EgressPolicy resources, never by routes", l))
		}
	}
	for i, h := range sp.Hosts {
		if err := checkHostPattern(h); err != nil {
			f(fmt.Sprintf("spec.hosts[%d]", i), err.Error())
		}
	}
	if len(sp.Rules) == 0 {
		f("spec.rules", "at least one rule is required")
	}
	for i := range sp.Rules {
		r := &sp.Rules[i]
		p := fmt.Sprintf("spec.rules[%d]", i)
		v.match(f, p+".match", &r.Match)
		for j, fl := range r.Filters {
			if fl.Type == "" {
				f(fmt.Sprintf("%s.filters[%d].type", p, j), "required")
			}
		}
		n := 0
		if r.Forward != nil {
			n++
			v.forward(f, p+".forward", r, o.Meta.Namespace, clusters)
		}
		if r.Redirect != nil {
			n++
			v.redirect(f, p+".redirect", r)
		}
		if d := r.DirectResponse; d != nil {
			n++
			if d.Status < 100 || d.Status > 599 {
				f(p+".directResponse.status", fmt.Sprintf("%d is not an HTTP status", d.Status))
			}
		}
		if n != 1 {
			f(p, "exactly one of forward, redirect and directResponse is required")
		}
	}
}

func (v *validator) match(f func(string, string), p string, m *Match) {
	if pm := m.Path; pm != nil {
		n := 0
		for _, s := range []string{pm.Exact, pm.Prefix, pm.Regex, pm.Template} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			f(p+".path", "exactly one of exact, prefix, regex and template is required")
		}
		for field, s := range map[string]string{"exact": pm.Exact, "prefix": pm.Prefix, "template": pm.Template} {
			if s != "" && s[0] != '/' {
				f(p+".path."+field, fmt.Sprintf("%q must start with '/'", s))
			}
		}
	}
	for i, m := range m.Methods {
		if !httpguts.ValidHeaderFieldName(m) || strings.ToUpper(m) != m {
			f(fmt.Sprintf("%s.methods[%d]", p, i), fmt.Sprintf("%q is not an upper-case HTTP method", m))
		}
	}
	for kind, list := range map[string][]ValueMatch{"headers": m.Headers, "query": m.Query} {
		for i, vm := range list {
			q := fmt.Sprintf("%s.%s[%d]", p, kind, i)
			if vm.Name == "" {
				f(q+".name", "required")
			} else if kind == "headers" && !httpguts.ValidHeaderFieldName(vm.Name) {
				f(q+".name", fmt.Sprintf("%q is not a header name", vm.Name))
			}
			n := 0
			for _, b := range []bool{vm.Exact != "", vm.Regex != "", vm.Present, vm.Absent} {
				if b {
					n++
				}
			}
			if n != 1 {
				f(q, "exactly one of exact, regex, present and absent is required")
			}
		}
	}
}

var retryConditions = map[string]bool{RetryOnConnectFailure: true, RetryOnReset: true, RetryOnGatewayError: true, RetryOn5xx: true, RetryOnStatus: true}

func (v *validator) forward(f func(string, string), p string, r *RouteRule, ns string, clusters map[string]*Object[ClusterSpec]) {
	fw := r.Forward
	if len(fw.Backends) == 0 {
		f(p+".backends", "at least one backend is required")
	}
	total := 0
	for i, b := range fw.Backends {
		q := fmt.Sprintf("%s.backends[%d]", p, i)
		if clusters[ns+"/"+b.Cluster] == nil {
			f(q+".cluster", fmt.Sprintf("no Cluster %q in namespace %q", b.Cluster, ns))
		}
		w := 1
		if b.Weight != nil {
			w = *b.Weight
		}
		if w < 0 {
			f(q+".weight", "must not be negative")
		}
		total += w
	}
	if len(fw.Backends) > 0 && total <= 0 {
		f(p+".backends", "the weights add up to zero: no backend would take traffic")
	}
	if rp := fw.Retry; rp != nil {
		if rp.Attempts < 0 || rp.Attempts > 10 {
			f(p+".retry.attempts", "must be between 0 and 10")
		}
		for i, c := range rp.On {
			if !retryConditions[c] {
				f(fmt.Sprintf("%s.retry.on[%d]", p, i), fmt.Sprintf("%q is not a retry condition (connect-failure, reset, gateway-error, 5xx, retriable-status)", c))
			}
		}
		hasStatusCond := false
		for _, c := range rp.On {
			hasStatusCond = hasStatusCond || c == RetryOnStatus
		}
		if hasStatusCond && len(rp.Statuses) == 0 {
			f(p+".retry.statuses", "retriable-status needs the statuses to retry")
		}
		if len(rp.Statuses) > 0 && len(rp.On) > 0 && !hasStatusCond {
			f(p+".retry.on", "statuses are given but retriable-status is not listed")
		}
		for i, s := range rp.Statuses {
			if s < 100 || s > 599 {
				f(fmt.Sprintf("%s.retry.statuses[%d]", p, i), fmt.Sprintf("%d is not an HTTP status", s))
			}
		}
		if rp.BudgetPercent != nil && (*rp.BudgetPercent < 0 || *rp.BudgetPercent > 100) {
			f(p+".retry.budgetPercent", "must be between 0 and 100")
		}
	}
	if rw := fw.Rewrite; rw != nil {
		if rw.Prefix != nil && rw.Regex != nil {
			f(p+".rewrite", "prefix and regex are exclusive")
		}
		if rw.Prefix != nil && (r.Match.Path == nil || r.Match.Path.Prefix == "") {
			f(p+".rewrite.prefix", "needs a rule that matches by path prefix")
		}
		if rw.Regex != nil && rw.Regex.Pattern == "" {
			f(p+".rewrite.regex.pattern", "required")
		}
	}
	if fw.MaxRequestBodyBytes != nil && *fw.MaxRequestBodyBytes < 0 {
		f(p+".maxRequestBodyBytes", "must not be negative")
	}
	v.upgrades(f, p, fw, ns, clusters)
}

func (v *validator) redirect(f func(string, string), p string, r *RouteRule) {
	rd := r.Redirect
	switch rd.Status {
	case 0, 301, 302, 303, 307, 308:
	default:
		f(p+".status", fmt.Sprintf("%d is not a redirect status (301, 302, 303, 307, 308)", rd.Status))
	}
	if rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https" {
		f(p+".scheme", fmt.Sprintf("%q is not http or https", rd.Scheme))
	}
	if rd.Port < 0 || rd.Port > 65535 {
		f(p+".port", "not a port number")
	}
	if rd.Path != "" && rd.Prefix != "" {
		f(p, "path and prefix are exclusive")
	}
	if rd.Prefix != "" && (r.Match.Path == nil || r.Match.Path.Prefix == "") {
		f(p+".prefix", "needs a rule that matches by path prefix")
	}
}

func (v *validator) cluster(o *Object[ClusterSpec]) {
	ref, sp := o.Ref(KindCluster), &o.Spec
	f := func(field, msg string) { v.fail(o.Source, ref, field, msg) }
	// Beside registry, endpoints are the ones the control plane filled in (none
	// is allowed: no healthy endpoint), so they do not count as a second source.
	sources := 0
	for _, set := range []bool{len(sp.Endpoints) > 0 && sp.Registry == nil, sp.DNS != nil, sp.Registry != nil} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		f("spec", "exactly one of endpoints, dns and registry is required")
	}
	if r := sp.Registry; r != nil {
		switch {
		case r.Service == "":
			f("spec.registry.service", "required")
		case !validName(r.Service):
			f("spec.registry.service", fmt.Sprintf("%q is not a service name (a DNS label: lower-case letters, digits, '-', '.')", r.Service))
		}
	}
	for i, e := range sp.Endpoints {
		if err := checkHostPort(e.Address, true); err != nil {
			f(fmt.Sprintf("spec.endpoints[%d].address", i), err.Error()+" (use dns for host names)")
		}
		if e.Weight < 0 {
			f(fmt.Sprintf("spec.endpoints[%d].weight", i), "must not be negative")
		}
	}
	if d := sp.DNS; d != nil {
		if d.Name == "" {
			f("spec.dns.name", "required")
		}
		if d.Port < 1 || d.Port > 65535 {
			f("spec.dns.port", "required, 1-65535")
		}
	}
	switch sp.Protocol {
	case "", UpstreamHTTP1:
	case UpstreamH2C:
		if sp.TLS != nil {
			f("spec.protocol", "H2C is clear text; use HTTP2 for HTTP/2 over TLS")
		}
	case UpstreamHTTP2:
		if sp.TLS == nil {
			f("spec.protocol", "HTTP2 needs tls; use H2C for clear-text HTTP/2")
		}
	default:
		f("spec.protocol", fmt.Sprintf("%q is not one of HTTP1, HTTP2, H2C", sp.Protocol))
	}
	if t := sp.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		f("spec.tls", "certFile and keyFile go together")
	}
	lb := sp.LoadBalancer
	switch lb.Policy {
	case "", LBRoundRobin, LBLeastRequest, LBRandom:
	case LBRingHash, LBMaglev:
		if lb.Hash == nil {
			f("spec.loadBalancer.hash", "required for policy "+lb.Policy)
		}
	default:
		f("spec.loadBalancer.policy", fmt.Sprintf("%q is not one of roundRobin, leastRequest, random, ringHash, maglev", lb.Policy))
	}
	if h := lb.Hash; h != nil {
		n := 0
		for _, b := range []bool{h.Header != "", h.Cookie != "", h.SourceIP} {
			if b {
				n++
			}
		}
		if n != 1 {
			f("spec.loadBalancer.hash", "exactly one of header, cookie and sourceIP is required")
		}
	}
	if sc := lb.StickyCookie; sc != nil && sc.Name == "" {
		f("spec.loadBalancer.stickyCookie.name", "required")
	}
	if hc := sp.HealthCheck; hc != nil {
		if !strings.HasPrefix(hc.Path, "/") {
			f("spec.healthCheck.path", "required, and must start with '/'")
		}
		if hc.HealthyThreshold < 0 || hc.UnhealthyThreshold < 0 {
			f("spec.healthCheck", "thresholds must not be negative")
		}
	}
	if od := sp.OutlierDetection; od != nil && (od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100) {
		f("spec.outlierDetection.maxEjectionPercent", "must be between 0 and 100")
	}
	cb := sp.CircuitBreaker
	if cb.MaxConnections < 0 || cb.MaxPendingRequests < 0 || cb.MaxRequests < 0 || cb.MaxRetries < 0 {
		f("spec.circuitBreaker", "limits must not be negative")
	}
}

func (v *validator) telemetry(o *Object[TelemetrySpec]) {
	ref, sp := o.Ref(KindTelemetry), &o.Spec
	switch sp.AccessLog {
	case "", AccessLogErrors, AccessLogAll, AccessLogOff:
	default:
		v.fail(o.Source, ref, "spec.accessLog", fmt.Sprintf("%q is not one of errors, all, off", sp.AccessLog))
	}
	if t := sp.Tracing; t != nil {
		if t.SamplingRate < 0 || t.SamplingRate > 1 {
			v.fail(o.Source, ref, "spec.tracing.samplingRate", "must be between 0 and 1")
		}
		if t.Endpoint != "" {
			if err := checkHostPort(t.Endpoint, false); err != nil {
				v.fail(o.Source, ref, "spec.tracing.endpoint", err.Error())
			}
		}
	}
}

func (v *validator) external(o *Object[ExternalServiceSpec]) {
	ref, sp := o.Ref(KindExternalService), &o.Spec
	if len(sp.Hosts) == 0 {
		v.fail(o.Source, ref, "spec.hosts", "at least one host is required")
	}
	for i, h := range sp.Hosts {
		if err := checkHostPattern(h); err != nil {
			v.fail(o.Source, ref, fmt.Sprintf("spec.hosts[%d]", i), err.Error())
		}
	}
	if len(sp.Ports) == 0 {
		v.fail(o.Source, ref, "spec.ports", "at least one port is required")
	}
	for i, p := range sp.Ports {
		if p < 1 || p > 65535 {
			v.fail(o.Source, ref, fmt.Sprintf("spec.ports[%d]", i), "not a port number")
		}
	}
}

func checkMode(v *validator, src Source, ref, mode string) {
	if mode != "" && mode != ModeEnforce && mode != ModeReport {
		v.fail(src, ref, "spec.mode", fmt.Sprintf("%q is not enforce or report", mode))
	}
}

func (v *validator) egressPolicy(o *Object[EgressPolicySpec], externals map[string]*Object[ExternalServiceSpec]) {
	ref, sp := o.Ref(KindEgressPolicy), &o.Spec
	if len(sp.From) == 0 {
		v.fail(o.Source, ref, "spec.from", "at least one caller identity is required (default deny)")
	}
	for i, id := range sp.From {
		if err := checkEgressCaller(id); err != nil {
			v.fail(o.Source, ref, fmt.Sprintf("spec.from[%d]", i), err.Error())
		}
	}
	egressOperations(v, o)
	if len(sp.To) == 0 {
		v.fail(o.Source, ref, "spec.to", "at least one ExternalService is required")
	}
	for i, t := range sp.To {
		if externals[o.Meta.Namespace+"/"+t] == nil {
			v.fail(o.Source, ref, fmt.Sprintf("spec.to[%d]", i), fmt.Sprintf("no ExternalService %q in namespace %q", t, o.Meta.Namespace))
		}
	}
	checkMode(v, o.Source, ref, sp.Mode)
}

func (v *validator) authzPolicy(o *Object[AuthorizationPolicySpec], workloads map[string]*Object[WorkloadSpec]) {
	ref, sp := o.Ref(KindAuthorizationPolicy), &o.Spec
	if workloads[o.Meta.Namespace+"/"+sp.Workload] == nil {
		v.fail(o.Source, ref, "spec.workload", fmt.Sprintf("no Workload %q in namespace %q", sp.Workload, o.Meta.Namespace))
	}
	if sp.Action != "ALLOW" && sp.Action != "DENY" {
		v.fail(o.Source, ref, "spec.action", fmt.Sprintf("%q is not ALLOW or DENY", sp.Action))
	}
	if len(sp.Rules) == 0 {
		v.fail(o.Source, ref, "spec.rules", "at least one rule is required")
	}
	checkMode(v, o.Source, ref, sp.Mode)
}

func (v *validator) workload(o *Object[WorkloadSpec]) {
	ref, sp := o.Ref(KindWorkload), &o.Spec
	if !validName(sp.ServiceAccount) {
		v.fail(o.Source, ref, "spec.serviceAccount", "required, a DNS label")
	}
	if len(sp.Inbound) == 0 {
		v.fail(o.Source, ref, "spec.inbound", "at least one inbound port is required (nothing else is accepted)")
	}
	for i, p := range sp.Inbound {
		q := fmt.Sprintf("spec.inbound[%d]", i)
		if p.Port < 1 || p.Port > 65535 || p.AppPort < 1 || p.AppPort > 65535 {
			v.fail(o.Source, ref, q, "port and appPort must be 1-65535")
		}
		if p.Protocol != ProtocolHTTP && p.Protocol != ProtocolH2C {
			v.fail(o.Source, ref, q+".protocol", fmt.Sprintf("%q is not HTTP or H2C", p.Protocol))
		}
	}
}

// checkHostPort checks "host:port"; with ipOnly the host must be an IP literal.
func checkHostPort(s string, ipOnly bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has no valid port", s)
	}
	if ipOnly {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q is not an IP address and port", s)
		}
	}
	return nil
}

// checkHostPattern accepts "example.com" and "*.example.com" (one leading whole label).
func checkHostPattern(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" || strings.Contains(name, "*") {
		return fmt.Errorf("%q: a wildcard must be a whole leading label, as in *.example.com", h)
	}
	for _, l := range strings.Split(strings.ToLower(name), ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("%q is not a DNS name", h)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a DNS name", h)
			}
		}
	}
	return nil
}
