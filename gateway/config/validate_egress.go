package config

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Checks of the egress: the egress listener's settings and the callers and
// operations of an EgressPolicy.

// listenerEgress checks spec.egress of a Listener.
func listenerEgress(f func(field, msg string), e *ListenerEgress) {
	for _, d := range []struct {
		field    string
		v        *Duration
		min, max time.Duration
	}{
		{"resolveTimeout", e.ResolveTimeout, 10 * time.Millisecond, time.Minute},
		{"connectTimeout", e.ConnectTimeout, 10 * time.Millisecond, time.Minute},
		{"requestTimeout", e.RequestTimeout, 10 * time.Millisecond, 24 * time.Hour},
		{"tunnelIdleTimeout", e.TunnelIdleTimeout, time.Second, 24 * time.Hour},
	} {
		if d.v != nil && (d.v.D() < d.min || d.v.D() > d.max) {
			f("spec.egress."+d.field, fmt.Sprintf("%s is outside %s..%s", d.v.D(), d.min, d.max))
		}
	}
	// Each filter's config is checked by its factory when the snapshot is
	// compiled, with errors at spec.egress.filters[i].config.
	for i, fl := range e.Filters {
		if fl.Type == "" {
			f(fmt.Sprintf("spec.egress.filters[%d].type", i), "required")
		}
	}
}

// checkEgressCaller accepts "*" (every caller, anonymous included), a SPIFFE
// ID, or a SPIFFE ID prefix ending in "/*".
func checkEgressCaller(id string) error {
	if id == "*" {
		return nil
	}
	if !strings.HasPrefix(id, "spiffe://") || len(id) == len("spiffe://") {
		return fmt.Errorf("%q is not a SPIFFE ID, a prefix ending in \"/*\", or \"*\"", id)
	}
	if i := strings.IndexByte(id, '*'); i >= 0 && (i != len(id)-1 || !strings.HasSuffix(id, "/*")) {
		return fmt.Errorf("%q: a wildcard is only allowed as a whole last segment, as in spiffe://corp/ns/shop/*", id)
	}
	return nil
}

// egressOperations checks the methods (upper-case tokens) and path prefixes of
// an EgressPolicy.
func egressOperations(v *validator, o *Object[EgressPolicySpec]) {
	ref, sp := o.Ref(KindEgressPolicy), &o.Spec
	for i, m := range sp.Methods {
		if !httpguts.ValidHeaderFieldName(m) || strings.ToUpper(m) != m {
			v.fail(o.Source, ref, fmt.Sprintf("spec.methods[%d]", i), fmt.Sprintf("%q is not an upper-case method token", m))
		}
	}
	for i, p := range sp.Paths {
		if !strings.HasPrefix(p, "/") {
			v.fail(o.Source, ref, fmt.Sprintf("spec.paths[%d]", i), fmt.Sprintf("%q is not a path prefix starting with /", p))
		}
	}
}
