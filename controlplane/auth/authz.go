package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Verb is what a request does to what it names.
type Verb string

// Verbs.
const (
	Read  Verb = "read"
	Write Verb = "write"
)

// Rule grants verbs on kinds, in namespaces, to resources by name. Every list must
// match for the rule to grant a request; "*" in a list matches anything.
type Rule struct {
	// Namespaces the rule covers ("*": every namespace).
	Namespaces []string
	// Services are resource names (for a Route, Cluster ...: metadata.name; for a
	// RegistryEndpoint: the service). Empty or "*": every name.
	Services []string
	// Kinds are kind names ("Route"), category names ("routes", see Categories)
	// or "*" (every kind, including secrets once they exist).
	Kinds []string
	// Verbs are read, write or both.
	Verbs []Verb
}

// Role is a named set of rules; a request is granted when any rule grants it.
type Role struct {
	Name  string
	Rules []Rule
}

// Binding gives a role to principals, each written "kind:name" as
// Principal.String returns it ("user:alice@example.com", "cert:deploy-bot",
// "token:ci").
type Binding struct {
	Role       string
	Principals []string
}

// Request is one thing a caller wants to do.
type Request struct {
	Verb      Verb
	Kind      string
	Namespace string
	// Name is the resource (or registry service) name; "" asks whether the caller
	// may act on every name (a rule limited to some services does not grant it).
	Name string
}

func (r Request) String() string {
	what := r.Kind
	if r.Namespace != "" {
		what += " " + r.Namespace + "/"
		if r.Name == "" {
			what += "*"
		} else {
			what += r.Name
		}
	}
	return string(r.Verb) + " " + what
}

// Decision is the answer to a Request, with the reason recorded in the audit log.
type Decision struct {
	Allowed bool
	Reason  string
}

// Policy decides requests by the roles bound to the caller. It denies by default:
// a caller with no binding may do nothing. Proxies are not governed by bindings
// and are refused everything here: the push server and the registry authorize
// them against the identity their token is bound to.
type Policy struct {
	roles    map[string]*compiledRole
	bindings map[string][]*compiledRole // "kind:name" -> roles
}

type compiledRole struct {
	name  string
	rules []compiledRule
}

type compiledRule struct {
	namespaces set
	services   set
	kinds      set
	verbs      map[Verb]bool
}

// set matches a name; all is true for "*" (or an empty services list).
type set struct {
	all   bool
	names map[string]bool
}

func (s set) has(name string) bool { return s.all || s.names[name] }

// NewPolicy checks roles and bindings and compiles them. Errors name the field
// path ("roles[1].rules[0].kinds[2]").
func NewPolicy(roles []Role, bindings []Binding) (*Policy, error) {
	p := &Policy{roles: map[string]*compiledRole{}, bindings: map[string][]*compiledRole{}}
	var errs []string
	fail := func(path, format string, args ...any) {
		errs = append(errs, path+": "+fmt.Sprintf(format, args...))
	}
	for i, r := range roles {
		path := fmt.Sprintf("roles[%d]", i)
		if r.Name == "" {
			fail(path+".name", "required")
			continue
		}
		if p.roles[r.Name] != nil {
			fail(path+".name", "role %q is defined more than once", r.Name)
			continue
		}
		cr := &compiledRole{name: r.Name}
		if len(r.Rules) == 0 {
			fail(path+".rules", "at least one rule is required")
		}
		for j, rule := range r.Rules {
			cr.rules = append(cr.rules, compileRule(fmt.Sprintf("%s.rules[%d]", path, j), rule, fail))
		}
		p.roles[r.Name] = cr
	}
	for i, b := range bindings {
		path := fmt.Sprintf("bindings[%d]", i)
		role := p.roles[b.Role]
		if b.Role == "" {
			fail(path+".role", "required")
		} else if role == nil {
			fail(path+".role", "no role %q is defined", b.Role)
		}
		if len(b.Principals) == 0 {
			fail(path+".principals", "at least one principal is required")
		}
		for j, who := range b.Principals {
			if err := checkPrincipalRef(who); err != nil {
				fail(fmt.Sprintf("%s.principals[%d]", path, j), "%v", err)
				continue
			}
			if role != nil && !slices.Contains(p.bindings[who], role) {
				p.bindings[who] = append(p.bindings[who], role)
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return p, nil
}

func compileRule(path string, r Rule, fail func(path, format string, args ...any)) compiledRule {
	cr := compiledRule{verbs: map[Verb]bool{}}
	if len(r.Namespaces) == 0 {
		fail(path+".namespaces", `at least one namespace (or "*") is required`)
	}
	cr.namespaces = toSet(r.Namespaces)
	cr.services = toSet(r.Services)
	if len(r.Services) == 0 {
		cr.services.all = true
	}
	if len(r.Kinds) == 0 {
		fail(path+".kinds", `at least one kind, category or "*" is required`)
	}
	cr.kinds = set{names: map[string]bool{}}
	for i, k := range r.Kinds {
		switch {
		case k == "*":
			cr.kinds.all = true
		case Categories[k] != nil:
			for _, kind := range Categories[k] {
				cr.kinds.names[kind] = true
			}
		case knownKinds[k]:
			cr.kinds.names[k] = true
		default:
			fail(fmt.Sprintf("%s.kinds[%d]", path, i), "%q is neither a kind nor a category (%s)", k, strings.Join(CategoryNames(), ", "))
		}
	}
	if len(r.Verbs) == 0 {
		fail(path+".verbs", "at least one of read, write is required")
	}
	for i, v := range r.Verbs {
		if v != Read && v != Write {
			fail(fmt.Sprintf("%s.verbs[%d]", path, i), "%q is not read or write", v)
		}
		cr.verbs[v] = true
	}
	return cr
}

func toSet(names []string) set {
	s := set{names: map[string]bool{}}
	for _, n := range names {
		if n == "*" {
			s.all = true
		}
		s.names[n] = true
	}
	return s
}

// checkPrincipalRef checks a binding's "kind:name".
func checkPrincipalRef(s string) error {
	kind, name, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return fmt.Errorf("%q is not kind:name (user:alice@example.com, cert:deploy-bot, token:ci)", s)
	}
	switch kind {
	case KindUser, KindCert, KindToken:
		return nil
	case KindProxy:
		return fmt.Errorf("%q: proxies cannot be bound to roles; their tokens are bound to a proxy identity", s)
	default:
		return fmt.Errorf("%q: kind %q is not one of user, cert, token", s, kind)
	}
}

// Decide answers one request.
func (p *Policy) Decide(who Principal, req Request) Decision {
	if who.Kind == KindProxy {
		return decideProxy(who, req)
	}
	roles := p.bindings[who.String()]
	if len(roles) == 0 {
		return Decision{Reason: fmt.Sprintf("no role is bound to %s", who)}
	}
	for _, role := range roles {
		for i, rule := range role.rules {
			if rule.grants(req) {
				return Decision{Allowed: true, Reason: fmt.Sprintf("role %s (rule %d)", role.name, i)}
			}
		}
	}
	return Decision{Reason: fmt.Sprintf("no role bound to %s grants %s", who, req)}
}

// MaySome reports whether who may do verb on some resource of kind (every kind
// when kind is "") in namespace (every namespace when ""). List uses it to tell a
// caller who may read nothing there from one whose listing is merely empty.
func (p *Policy) MaySome(who Principal, verb Verb, kind, namespace string) bool {
	if who.Kind == KindProxy {
		return false // the admin API is not for proxies
	}
	for _, role := range p.bindings[who.String()] {
		for _, rule := range role.rules {
			if rule.verbs[verb] && (kind == "" && (rule.kinds.all || len(rule.kinds.names) > 0) || rule.kinds.has(kind)) &&
				(namespace == "" || rule.namespaces.has(namespace)) {
				return true
			}
		}
	}
	return false
}

func (r compiledRule) grants(req Request) bool {
	if !r.verbs[req.Verb] || !r.kinds.has(req.Kind) || !r.namespaces.has(req.Namespace) {
		return false
	}
	if req.Name == "" {
		return r.services.all
	}
	return r.services.has(req.Name)
}

// decideProxy refuses everything: a proxy's config stream is authorized by the push
// server, and its registry calls by the registry, both against the identity its
// token is bound to; the admin API is not for proxies at all.
func decideProxy(who Principal, req Request) Decision {
	return Decision{Reason: fmt.Sprintf("%s is a proxy credential: it may receive config and use the registry for its own service, not %s", who, req)}
}
