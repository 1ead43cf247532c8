package filter

import (
	"strconv"
	"strings"
)

// ClaimPath names a claim the way configs write one. A claim whose own name
// contains dots (a namespaced claim such as "https://example.com/roles") is found
// under that name first; otherwise each dot steps into a nested object
// ("realm_access.roles", "org.id"). Every filter that reads claims by name
// (Identity.Claim, authorization rules, the token minter's copied claims) finds
// them this way, so that one name means the same claim in every config.
//
// Make one with NewClaimPath when the config is loaded. Lookup allocates nothing.
// The zero ClaimPath names the claim "".
type ClaimPath struct {
	name string
	// nested is set when name has a dot: only then is walking into objects
	// worth a second try after the plain lookup.
	nested bool
}

// NewClaimPath returns the path for a claim name as written in config.
func NewClaimPath(name string) ClaimPath {
	return ClaimPath{name: name, nested: strings.IndexByte(name, '.') >= 0}
}

// Name returns the claim name as written.
func (p ClaimPath) Name() string { return p.name }

// Lookup returns the claim's value: the claim named exactly so, or else the value
// the dotted path leads to through nested objects. It returns false when neither
// exists, including when a step of the path is not an object. A nil map holds no
// claims.
func (p ClaimPath) Lookup(claims map[string]any) (any, bool) {
	if v, ok := claims[p.name]; ok {
		return v, true
	}
	if !p.nested {
		return nil, false
	}
	var cur any = claims
	for rest, more := p.name, true; more; {
		var step string
		step, rest, more = strings.Cut(rest, ".")
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[step]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// ClaimHeaderValue renders a claim as the value of a request header that passes
// it to the upstream: a string as it is, a number or boolean in its JSON form, an
// array of those joined with ", " (an HTTP list, RFC 9110 §5.6.1). It returns false
// for objects, nulls, nested arrays, an array element holding a comma (it would
// read as two elements), and anything with a control character other than tab
// (not a valid field value, RFC 9110 §5.5): such a claim is left out rather than
// sent in a form the upstream might misread. The jwt and oidc filters both use
// it, so that upstreams see one format behind either.
func ClaimHeaderValue(v any) (string, bool) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(x)
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			if _, nested := e.([]any); nested {
				return "", false
			}
			p, ok := ClaimHeaderValue(e)
			if !ok || strings.Contains(p, ",") {
				return "", false
			}
			parts = append(parts, p)
		}
		s = strings.Join(parts, ", ")
	default:
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return "", false
		}
	}
	return s, true
}
