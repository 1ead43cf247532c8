package certs

import (
	"fmt"
	"strings"
)

// allowList is the compiled set of names a Manager may obtain certificates for
// during a handshake: exact names, and one-label wildcards ("*.example.com"
// allows "a.example.com", not "a.b.example.com" nor "example.com"). Matching is
// two map look-ups: no pattern is evaluated per handshake, and nothing outside
// the process is asked.
type allowList struct {
	exact    map[string]bool
	wildcard map[string]bool // "example.com" for "*.example.com"
}

// compileAllowList compiles patterns; field names the config field in errors.
func compileAllowList(field string, patterns []string) (allowList, error) {
	a := allowList{exact: map[string]bool{}, wildcard: map[string]bool{}}
	for i, p := range patterns {
		name := normalizeName(p)
		rest, wild := strings.CutPrefix(name, "*.")
		if strings.Contains(rest, "*") || rest == "" || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") || strings.Contains(rest, "..") {
			return allowList{}, fmt.Errorf("%s[%d]: %q: not a name nor a one-label wildcard such as *.example.com", field, i, p)
		}
		if wild {
			a.wildcard[rest] = true
		} else {
			a.exact[rest] = true
		}
	}
	return a, nil
}

// add allows the exact names (the domains obtained at start).
func (a allowList) add(names []string) {
	for _, n := range names {
		a.exact[normalizeName(n)] = true
	}
}

// allows reports whether name may get a certificate.
func (a allowList) allows(name string) bool {
	name = normalizeName(name)
	if a.exact[name] {
		return true
	}
	i := strings.IndexByte(name, '.')
	return i > 0 && a.wildcard[name[i+1:]]
}

func normalizeName(n string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(n), "."))
}
