// Package authz is the "authz" filter: coarse authorization at the edge (SP 800-204
// MS-SS-2, MS-SS-12). An ordered list of rules says which callers may reach which
// methods and paths of a route: anyone, nobody, or callers that are authenticated
// and carry given issuers, scopes and claim values. The first rule whose methods
// and paths match the request decides; a request no rule matches is refused unless
// the config says "default: allow".
//
// The caller is the *filter.Identity that an authenticating filter earlier in the
// chain (jwt, oidc) put in the request's context; without one the request is
// anonymous. A refusal of an anonymous caller is 401 with a Bearer challenge; of
// an authenticated one, 403, with error="insufficient_scope" when a scope was
// missing (RFC 6750 §3.1). Every refusal is a security event.
//
// It is not for: authentication (jwt, oidc), fine-grained decisions that need the
// resource (the service's own), or rate limits.
package authz

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/gateway/edgetoken"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// Reasons reported with the *filter.Error values this filter returns, in access
// logs and metrics.
const (
	ReasonUnauthenticated   = "authz_unauthenticated"    // 401: the rule needs a caller, there is none
	ReasonInsufficientScope = "authz_insufficient_scope" // 403: a required scope is missing
	ReasonIssuer            = "authz_issuer_not_allowed" // 403: the caller's issuer is not among the rule's
	ReasonClaim             = "authz_claim_mismatch"     // 403: a required claim is missing or has another value
	ReasonDeniedByRule      = "authz_denied"             // 403: the matching rule is "deny: true"
	ReasonNoRule            = "authz_no_rule"            // 403: no rule matched and the default is deny
	ReasonAmbiguousPath     = "authz_ambiguous_path"     // 400: the decoded path has dot segments
)

// outcome is what a decision does with the request.
type outcome uint8

const (
	allow outcome = iota
	refuse401
	refuse403
	refuse400
)

// decision is the verdict on one request, with the reason and the rule that gave
// it (nil: the default, or a path refused before any rule).
type decision struct {
	outcome outcome
	reason  string
	rule    *rule
}

// authz is immutable after Factory.
type authz struct {
	route        string
	rules        []rule
	defaultAllow bool
	report       bool               // log refusals, refuse nothing
	scopes       edgetoken.ScopeSet // every scope some rule names
	challenge401 string
	errors       map[string]*filter.Error // by reason, made once: refusing costs no allocation of ours
	events       filter.Events
	log          *slog.Logger
}

var _ filter.Filter = (*authz)(nil)

func (f *authz) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	d := f.decide(r)
	if d.outcome == allow {
		return next.ServeHTTP(w, r)
	}
	f.security(r, d)
	if f.report {
		return next.ServeHTTP(w, r)
	}
	switch d.outcome {
	case refuse401:
		w.Header()["Www-Authenticate"] = []string{f.challenge401}
	case refuse403:
		if d.reason == ReasonInsufficientScope {
			w.Header()["Www-Authenticate"] = []string{d.rule.scopeChallenge}
		}
	}
	return f.errors[d.reason]
}

// decide finds the first rule that matches the request's method and path and
// applies it. It allocates nothing.
func (f *authz) decide(r *http.Request) decision {
	path := r.URL.Path
	if hasDotSegment(path) {
		// The listener resolves dot segments, so the decoded path has one only
		// when it came from an escaped slash kept as is ("/a%2F..%2Fadmin").
		// Which path that names is up to the upstream, so no rule can say.
		return decision{outcome: refuse400, reason: ReasonAmbiguousPath}
	}
	id, authenticated := filter.IdentityFrom(r.Context())
	for i := range f.rules {
		ru := &f.rules[i]
		if ru.matches(r.Method, path) {
			return f.apply(ru, id, authenticated)
		}
	}
	if f.defaultAllow {
		return decision{outcome: allow}
	}
	// 403 even for an anonymous caller: no credentials would change the answer,
	// so a challenge would only invite a pointless retry.
	return decision{outcome: refuse403, reason: ReasonNoRule}
}

// apply checks the caller against a matching rule: issuer, then scopes, then
// claims, so that a caller missing a scope hears about the scope, which it can
// ask its issuer for.
func (f *authz) apply(ru *rule, id *filter.Identity, authenticated bool) decision {
	switch ru.effect {
	case effectPublic:
		return decision{outcome: allow, rule: ru}
	case effectDeny:
		return decision{outcome: refuse403, reason: ReasonDeniedByRule, rule: ru}
	}
	if !authenticated {
		return decision{outcome: refuse401, reason: ReasonUnauthenticated, rule: ru}
	}
	if len(ru.issuers) > 0 && !contains(ru.issuers, id.Issuer) {
		return decision{outcome: refuse403, reason: ReasonIssuer, rule: ru}
	}
	if ru.allOf|ru.anyOf != 0 {
		m := f.scopes.Mask(id)
		if m&ru.allOf != ru.allOf || ru.anyOf != 0 && m&ru.anyOf == 0 {
			return decision{outcome: refuse403, reason: ReasonInsufficientScope, rule: ru}
		}
	}
	for i := range ru.claims {
		if !ru.claims[i].matches(id) {
			return decision{outcome: refuse403, reason: ReasonClaim, rule: ru}
		}
	}
	return decision{outcome: allow, rule: ru}
}

// security reports a refusal (in report mode, one that would have been): the
// reason, the rule, the request line and who the caller said it was. Never a
// credential: the identity's claims are not logged.
func (f *authz) security(r *http.Request, d decision) {
	remote := r.RemoteAddr
	if info := proxy.InfoFrom(r.Context()); info != nil && info.ClientIP.IsValid() {
		remote = info.ClientIP.String()
	}
	var b strings.Builder
	b.WriteString("authz: ")
	if f.report {
		b.WriteString("would refuse: ")
	}
	b.WriteString(d.reason)
	b.WriteString(" route=")
	b.WriteString(f.route)
	b.WriteString(" rule=")
	switch {
	case d.rule != nil:
		b.WriteString(d.rule.label)
	case d.reason == ReasonNoRule:
		b.WriteString("default")
	default:
		b.WriteString("none") // refused before any rule was looked at
	}
	b.WriteString(" method=")
	b.WriteString(cut(r.Method, 32))
	b.WriteString(" path=")
	b.WriteString(cut(r.URL.Path, 256))
	if id, ok := filter.IdentityFrom(r.Context()); ok {
		b.WriteString(" issuer=")
		b.WriteString(cut(id.Issuer, 128))
		b.WriteString(" sub=")
		b.WriteString(cut(id.Subject, 128))
	}
	kind := "authz_denied"
	if f.report {
		kind = "authz_report"
	}
	filter.ReportSecurityEvent(r.Context(), f.events, f.log, filter.SecurityEvent{
		Filter: Type, Kind: kind, Reason: d.reason, Remote: remote, Detail: b.String(),
	})
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// hasDotSegment reports whether a path has a "." or ".." segment.
func hasDotSegment(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '.' || i > 0 && p[i-1] != '/' {
			continue
		}
		j := i + 1
		if j < len(p) && p[j] == '.' {
			j++
		}
		if j == len(p) || p[j] == '/' {
			return true
		}
	}
	return false
}
