package authz

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/portcullis/portcullis/gateway/filter"
)

// Type is the name under which the filter is registered ("type: authz" in a Route rule).
const Type = "authz"

func init() { filter.Register(Type, Factory) }

// Bounds and defaults of the config.
const (
	MaxRules     = 256
	DefaultRealm = "portcullis"
)

// Config is the filter's config as written in a Route rule.
type Config struct {
	// Rules, in order; the first whose methods and paths match decides. At least one.
	Rules []RuleConfig `yaml:"rules"`
	// Default decides requests no rule matches: "deny" (the default) or "allow".
	Default string `yaml:"default,omitempty"`
	// Mode "enforce" (the default) refuses; "report" only logs what it would
	// refuse, to try rules on live traffic before enforcing them.
	Mode string `yaml:"mode,omitempty"`
	// Realm is the realm of the WWW-Authenticate challenge. Default "portcullis".
	Realm string `yaml:"realm,omitempty"`
}

// RuleConfig is one rule. Exactly one of Require, Public and Deny is set.
type RuleConfig struct {
	// Name appears in logs; optional.
	Name string `yaml:"name,omitempty"`
	// Methods the rule applies to, exactly as sent (GET does not imply HEAD).
	// None: every method.
	Methods []string `yaml:"methods,omitempty"`
	// Paths the rule applies to: "/a/b" matches that path only; "/a/*" matches
	// "/a", "/a/" and everything below; "/*" matches every path. At least one.
	Paths []string `yaml:"paths"`
	// Require lets through authenticated callers that meet every condition.
	Require *Require `yaml:"require,omitempty"`
	// Public lets anyone through, authenticated or not.
	Public bool `yaml:"public,omitempty"`
	// Deny refuses everyone.
	Deny bool `yaml:"deny,omitempty"`
}

// Require lists conditions on the caller; all must hold. Any of them implies an
// authenticated caller.
type Require struct {
	// Authenticated: true asks for nothing more than an authenticated caller.
	Authenticated *bool `yaml:"authenticated,omitempty"`
	// Issuers: the caller's issuer (filter.Identity.Issuer, the name its
	// authenticating filter gives it) must be one of them.
	Issuers []string `yaml:"issuers,omitempty"`
	// Scopes the caller's token must carry.
	Scopes *Scopes `yaml:"scopes,omitempty"`
	// Claims: each must have one of its values.
	Claims []ClaimConfig `yaml:"claims,omitempty"`
}

// Scopes: every scope of AllOf and, when AnyOf is set, at least one of AnyOf.
type Scopes struct {
	AllOf []string `yaml:"allOf,omitempty"`
	AnyOf []string `yaml:"anyOf,omitempty"`
}

// ClaimConfig requires one claim to have one of Values.
type ClaimConfig struct {
	// Name is the claim, a dotted path into nested objects ("org.id"), as
	// filter.Identity.Claim reads it.
	Name   string   `yaml:"name"`
	Values []string `yaml:"values"`
}

// Factory decodes and checks the config and compiles the rules.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	f := &authz{
		route:  b.Route,
		events: b.Events,
		log:    b.LoggerFor(Type),
	}
	var probs filter.Problems
	fail := probs.Add

	switch cfg.Default {
	case "", "deny":
	case "allow":
		f.defaultAllow = true
	default:
		fail("default", "%q is neither deny nor allow", cfg.Default)
	}
	switch cfg.Mode {
	case "", "enforce":
	case "report":
		f.report = true
	default:
		fail("mode", "%q is neither enforce nor report", cfg.Mode)
	}
	realm := DefaultRealm
	if cfg.Realm != "" {
		if !filter.Quotable(cfg.Realm) {
			fail("realm", "must be printable ASCII without '\"' or '\\'")
		}
		realm = cfg.Realm
	}
	f.challenge401 = `Bearer realm="` + realm + `"`

	switch n := len(cfg.Rules); {
	case n == 0:
		fail("rules", "at least one rule is required")
	case n > MaxRules:
		fail("rules", "%d rules, more than the %d allowed", n, MaxRules)
	}
	for i, rc := range cfg.Rules {
		f.rules = append(f.rules, f.compileRule("rules["+strconv.Itoa(i)+"]", rc, realm, fail))
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	// Only for a config whose rules compiled: the check compares them.
	for j := range f.rules {
		if by := shadowedBy(f.rules, j); by != nil {
			fail(f.rules[j].label, "never applies: every request it matches is matched first by %s", strings.Join(by, ", "))
		}
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	f.errors = map[string]*filter.Error{}
	for reason, status := range map[string]int{
		ReasonUnauthenticated: http.StatusUnauthorized, ReasonInsufficientScope: http.StatusForbidden,
		ReasonIssuer: http.StatusForbidden, ReasonClaim: http.StatusForbidden, ReasonDeniedByRule: http.StatusForbidden,
		ReasonNoRule: http.StatusForbidden, ReasonAmbiguousPath: http.StatusBadRequest,
	} {
		f.errors[reason] = &filter.Error{Status: status, Reason: reason}
	}
	if f.defaultAllow {
		f.log.Warn("authz: default allow: requests that no rule matches pass")
	}
	if f.report {
		f.log.Warn("authz: report mode: refusals are logged, not enforced")
	}
	return f, nil
}

// compileRule checks one rule and compiles it; problems go to fail.
func (f *authz) compileRule(field string, rc RuleConfig, realm string, fail func(string, string, ...any)) rule {
	ru := rule{label: field}
	if rc.Name != "" {
		ru.label += " (" + cut(rc.Name, 64) + ")"
	}
	for j, m := range rc.Methods {
		mf := field + ".methods[" + strconv.Itoa(j) + "]"
		switch {
		case !validMethod(m):
			fail(mf, "%q is not a method name", m)
		case m != strings.ToUpper(m) && isStandardMethod(strings.ToUpper(m)):
			// Methods are case-sensitive (RFC 9110 §9.1): "get" would never match GET.
			fail(mf, "%q never matches: methods are case-sensitive; write %s", m, strings.ToUpper(m))
		case slices.Contains(ru.methods, m):
			fail(mf, "%q is listed twice", m)
		default:
			ru.methods = append(ru.methods, m)
		}
	}
	if len(rc.Paths) == 0 {
		fail(field+".paths", "at least one path is required (\"/*\" for every path)")
	}
	for j, p := range rc.Paths {
		pf := field + ".paths[" + strconv.Itoa(j) + "]"
		if err := checkPattern(p); err != "" {
			fail(pf, "%q: %s", p, err)
			continue
		}
		if base, ok := strings.CutSuffix(p, "/*"); ok {
			if slices.Contains(ru.prefixes, base) {
				fail(pf, "%q is listed twice", p)
			}
			ru.prefixes = append(ru.prefixes, base)
		} else {
			if slices.Contains(ru.exact, p) {
				fail(pf, "%q is listed twice", p)
			}
			ru.exact = append(ru.exact, p)
		}
	}
	set := 0
	for _, b := range []bool{rc.Require != nil, rc.Public, rc.Deny} {
		if b {
			set++
		}
	}
	if set != 1 {
		fail(field, "exactly one of require, public: true and deny: true is required")
	}
	switch {
	case rc.Public:
		ru.effect = effectPublic
	case rc.Deny:
		ru.effect = effectDeny
	case rc.Require != nil:
		ru.effect = effectRequire
		f.compileRequire(field+".require", rc.Require, &ru, realm, fail)
	}
	return ru
}

func (f *authz) compileRequire(field string, rq *Require, ru *rule, realm string, fail func(string, string, ...any)) {
	if a := rq.Authenticated; a != nil && !*a {
		fail(field+".authenticated", "false is not a requirement; a rule anyone may pass says public: true")
	}
	if rq.Authenticated == nil && len(rq.Issuers) == 0 && rq.Scopes == nil && len(rq.Claims) == 0 {
		fail(field, "no condition; write authenticated: true for any authenticated caller")
	}
	for j, iss := range rq.Issuers {
		if iss == "" {
			fail(field+".issuers["+strconv.Itoa(j)+"]", "must not be empty")
		}
	}
	ru.issuers = rq.Issuers
	if sc := rq.Scopes; sc != nil {
		if len(sc.AllOf) == 0 && len(sc.AnyOf) == 0 {
			fail(field+".scopes", "at least one of allOf and anyOf is required")
		}
		ru.allOf = f.scopeSet(field+".scopes.allOf", sc.AllOf, fail)
		ru.anyOf = f.scopeSet(field+".scopes.anyOf", sc.AnyOf, fail)
		// RFC 6750 §3: scope lists what a token needs. With anyOf, any one of
		// those would do; listing all of them still names a token that passes.
		need := slices.Concat(sc.AllOf, sc.AnyOf)
		ru.scopeChallenge = `Bearer realm="` + realm + `", error="insufficient_scope", ` +
			`error_description="the token lacks a scope this request requires", scope="` + strings.Join(need, " ") + `"`
	}
	for j, c := range rq.Claims {
		cf := field + ".claims[" + strconv.Itoa(j) + "]"
		if c.Name == "" {
			fail(cf+".name", "required")
		}
		if len(c.Values) == 0 {
			fail(cf+".values", "at least one value is required")
		}
		ru.claims = append(ru.claims, claimRule{claim: filter.NewClaimPath(c.Name), values: c.Values})
	}
}

// scopeSet gives each scope a bit and returns the bits of the list.
func (f *authz) scopeSet(field string, scopes []string, fail func(string, string, ...any)) uint64 {
	var m uint64
	for j, s := range scopes {
		bit, err := f.scopes.Add(s)
		if err != nil {
			fail(field+"["+strconv.Itoa(j)+"]", "%v", err)
		}
		m |= bit
	}
	return m
}

// checkPattern explains what is wrong with a path pattern, or returns "".
// Patterns are compared with the decoded, normalised request path, so they must
// be written in that form.
func checkPattern(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "must start with /"
	}
	if i := strings.IndexByte(p, '*'); i >= 0 && (i != len(p)-1 || p[i-1] != '/') {
		return "* is only allowed as the whole last segment (\"/a/*\")"
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			return "control character"
		case c == '?' || c == '#':
			return "a path pattern has no query or fragment"
		case c == '%':
			return "write the path decoded: it is compared with the request path after percent-decoding"
		}
	}
	if strings.Contains(p, "//") {
		return "empty segment (//): the listener merges slashes, so no request has one"
	}
	if hasDotSegment(p) {
		return "dot segment: the listener resolves them, so no request has one"
	}
	return ""
}

// shadowedBy returns the earlier rules that together match every request rule j
// matches, or nil when some request reaches rule j. It is a sufficient check,
// not an exact one: each of j's patterns must be covered by one earlier rule
// whose methods include all of j's.
func shadowedBy(rules []rule, j int) []string {
	var by []string
	covered := func(i int) bool { // does rule i cover j's methods?
		if rules[i].methods == nil {
			return true
		}
		if rules[j].methods == nil {
			return false
		}
		for _, m := range rules[j].methods {
			if !contains(rules[i].methods, m) {
				return false
			}
		}
		return true
	}
	find := func(matches func(*rule) bool) bool {
		for i := 0; i < j; i++ {
			if covered(i) && matches(&rules[i]) {
				if !slices.Contains(by, rules[i].label) {
					by = append(by, rules[i].label)
				}
				return true
			}
		}
		return false
	}
	for _, e := range rules[j].exact {
		if !find(func(r *rule) bool { return r.matchesPath(e) }) {
			return nil
		}
	}
	for _, base := range rules[j].prefixes {
		if !find(func(r *rule) bool {
			for _, b := range r.prefixes {
				if underPrefix(b, base) {
					return true
				}
			}
			return false
		}) {
			return nil
		}
	}
	return by
}

// validMethod: a method is a token (RFC 9110 §9.1, §5.6.2), the grammar of a
// header field name too.
func validMethod(m string) bool { return httpguts.ValidHeaderFieldName(m) }

func isStandardMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
