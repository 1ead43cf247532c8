package egress

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/gateway/config"
)

// Service is one ExternalService, ready to match.
type Service struct {
	Name      string // "namespace/name", for metrics and logs
	exact     []string
	wildcards []string // ".example.com" for "*.example.com"
	ports     []int
	spec      config.ExternalServiceSpec
}

// matchesHost reports whether host (lower case, no trailing dot) is one of the
// service's names: exactly, or one label under a wildcard.
func (s *Service) matchesHost(host string) (exact, ok bool) {
	if slices.Contains(s.exact, host) {
		return true, true
	}
	for _, w := range s.wildcards {
		if rest, found := strings.CutSuffix(host, w); found && rest != "" && !strings.Contains(rest, ".") {
			return false, true
		}
	}
	return false, false
}

// defaultPort is the port of an HTTP request that names none: 443 when the
// egress originates TLS to the service, else 80.
func (s *Service) defaultPort() int {
	if s.spec.OriginateTLS {
		return 443
	}
	return 80
}

// Decision results.
const (
	Allow  = "allow"
	Deny   = "deny"
	Report = "report" // denied by the policies, allowed because a report-mode policy covers it
)

// Denial reasons: fixed words, used as the reply's reason and in logs.
const (
	ReasonUnknownDestination = "egress_unknown_destination" // no ExternalService has this host and port
	ReasonCallerDenied       = "egress_caller_denied"       // no policy lets this caller reach the service
	ReasonOperationDenied    = "egress_operation_denied"    // the caller may reach the service, not with this method, path or CONNECT
)

// Decision is the outcome of Decide, with the reason for anything but Allow and
// the policy that decided, if one did.
type Decision struct {
	Result string
	Reason string
	Policy string // "namespace/name"
}

// Allowed reports whether the request goes on (Allow or Report).
func (d Decision) Allowed() bool { return d.Result != Deny }

// policy is one EgressPolicy, ready to evaluate.
type policy struct {
	name    string
	callers []string // exact IDs; prefixes end in "/" ("/*" cut to "/"); "*" is everyone
	to      []string // service names (namespace/name)
	methods []string
	paths   []string
	report  bool
}

func (p *policy) admitsCaller(id string) bool {
	for _, c := range p.callers {
		switch {
		case c == "*":
			return true
		case id == "":
			// An anonymous caller is admitted by "*" only.
		case strings.HasSuffix(c, "/"):
			if strings.HasPrefix(id, c) && len(id) > len(c) {
				return true
			}
		case c == id:
			return true
		}
	}
	return false
}

// admitsOperation checks the method and path; a CONNECT hides both, so only a
// policy without paths whose methods are empty or list CONNECT admits it.
func (p *policy) admitsOperation(method, path string) bool {
	if method == http.MethodConnect {
		return len(p.paths) == 0 && (len(p.methods) == 0 || slices.Contains(p.methods, http.MethodConnect))
	}
	if len(p.methods) > 0 && !slices.Contains(p.methods, method) {
		return false
	}
	if len(p.paths) == 0 {
		return true
	}
	for _, pre := range p.paths {
		if hasPathPrefix(path, pre) {
			return true
		}
	}
	return false
}

// hasPathPrefix is segment-aware: "/v1" matches "/v1" and "/v1/x", not "/v10".
func hasPathPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// Catalog holds the ExternalServices and EgressPolicies of one namespace.
// Immutable after NewCatalog; safe for concurrent use.
type Catalog struct {
	services []*Service
	policies []*policy
}

// NewCatalog compiles the resources of namespace ns from a validated set.
func NewCatalog(set *config.Set, ns string) *Catalog {
	c := &Catalog{}
	for _, o := range set.ExternalServices {
		if o.Meta.Namespace != ns {
			continue
		}
		s := &Service{Name: ns + "/" + o.Meta.Name, ports: o.Spec.Ports, spec: o.Spec}
		for _, h := range o.Spec.Hosts {
			h = strings.TrimSuffix(strings.ToLower(h), ".")
			if w, ok := strings.CutPrefix(h, "*"); ok {
				s.wildcards = append(s.wildcards, w)
			} else {
				s.exact = append(s.exact, h)
			}
		}
		c.services = append(c.services, s)
	}
	for _, o := range set.EgressPolicies {
		if o.Meta.Namespace != ns {
			continue
		}
		p := &policy{name: ns + "/" + o.Meta.Name, methods: o.Spec.Methods, paths: o.Spec.Paths, report: o.Spec.Mode == config.ModeReport}
		for _, f := range o.Spec.From {
			if pre, ok := strings.CutSuffix(f, "/*"); ok {
				f = pre + "/" // a prefix: everything under it
			}
			p.callers = append(p.callers, f)
		}
		for _, t := range o.Spec.To {
			p.to = append(p.to, ns+"/"+t)
		}
		c.policies = append(c.policies, p)
	}
	return c
}

// Match finds the ExternalService for host and port. port 0 means the request
// named none (an HTTP request): each candidate's default port is used. An
// exact name wins over a wildcard; among equals, the first in config order.
// It returns the service and the port to dial.
func (c *Catalog) Match(host string, port int) (*Service, int, bool) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	var wild *Service
	wildPort := 0
	for _, s := range c.services {
		exact, ok := s.matchesHost(host)
		if !ok {
			continue
		}
		p := port
		if p == 0 {
			p = s.defaultPort()
		}
		if !slices.Contains(s.ports, p) {
			continue
		}
		if exact {
			return s, p, true
		}
		if wild == nil {
			wild, wildPort = s, p
		}
	}
	return wild, wildPort, wild != nil
}

// Decide applies the policies to caller ("" when anonymous) reaching svc with
// method and path (path is ignored for CONNECT). Default deny: a request is
// allowed when a policy admits its caller, service and operation. A report-mode
// policy that admits the caller and the service but not the operation turns
// the denial into Report; no policy ever opens a service to a caller it does
// not name.
func (c *Catalog) Decide(caller string, svc *Service, method, path string) Decision {
	var report *policy
	callerKnown := false
	for _, p := range c.policies {
		if !slices.Contains(p.to, svc.Name) || !p.admitsCaller(caller) {
			continue
		}
		callerKnown = true
		if p.admitsOperation(method, path) {
			return Decision{Result: Allow, Policy: p.name}
		}
		if p.report && report == nil {
			report = p
		}
	}
	reason := ReasonCallerDenied
	if callerKnown {
		reason = ReasonOperationDenied
	}
	if report != nil {
		return Decision{Result: Report, Reason: reason, Policy: report.name}
	}
	return Decision{Result: Deny, Reason: reason}
}

// String describes a service for logs.
func (s *Service) String() string { return fmt.Sprintf("%s %v %v", s.Name, s.spec.Hosts, s.ports) }
