package authz

import (
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/gateway/filter"
)

// effect is what a matching rule does.
type effect uint8

const (
	effectRequire effect = iota // the caller must meet the requirements
	effectPublic                // anyone, authenticated or not
	effectDeny                  // nobody
)

// rule is one compiled rule. Matching and checking it allocate nothing.
type rule struct {
	label   string   // "rules[2]", or "rules[2] (orders-write)" when named
	methods []string // nil: every method
	exact   []string // paths matched as written
	// prefixes are the bases of "/x/*" patterns: "/x" matches "/x", "/x/" and
	// "/x/..." but not "/xy". "/*" has the base "" and matches every path.
	prefixes []string
	effect   effect

	issuers        []string
	allOf, anyOf   uint64 // bits of authz.scopeBits
	claims         []claimRule
	scopeChallenge string // WWW-Authenticate of a 403 for a missing scope
}

func (ru *rule) matches(method, path string) bool {
	return (ru.methods == nil || contains(ru.methods, method)) && ru.matchesPath(path)
}

func (ru *rule) matchesPath(path string) bool {
	for _, e := range ru.exact {
		if path == e {
			return true
		}
	}
	for _, b := range ru.prefixes {
		if underPrefix(b, path) {
			return true
		}
	}
	return false
}

// underPrefix reports whether path is base or below it, segment-aware.
func underPrefix(base, path string) bool {
	return strings.HasPrefix(path, base) && (len(path) == len(base) || path[len(base)] == '/')
}

// claimRule requires a claim to have one of a set of values.
type claimRule struct {
	claim  filter.ClaimPath
	values []string
}

// matches applies a claim requirement: a string, number or boolean claim must
// equal one of the values (numbers and booleans in the form Identity.Claim gives
// them); an array claim must contain one of them among its strings. Objects,
// nulls and missing claims never match.
func (c *claimRule) matches(id *filter.Identity) bool {
	v, ok := c.claim.Lookup(id.Claims)
	if !ok {
		return false
	}
	switch t := v.(type) {
	case string:
		return contains(c.values, t)
	case []any:
		for _, e := range t {
			if s, isStr := e.(string); isStr && contains(c.values, s) {
				return true
			}
		}
		return false
	case []string:
		for _, s := range t {
			if contains(c.values, s) {
				return true
			}
		}
		return false
	case float64:
		return contains(c.values, strconv.FormatFloat(t, 'f', -1, 64))
	case bool:
		return contains(c.values, strconv.FormatBool(t))
	case int64:
		return contains(c.values, strconv.FormatInt(t, 10))
	case int:
		return contains(c.values, strconv.Itoa(t))
	}
	return false
}
