package edgetoken

import (
	"fmt"

	"github.com/portcullis/portcullis/gateway/filter"
)

// MaxScopeSet is how many scopes a ScopeSet holds: one bit each of a uint64.
const MaxScopeSet = 64

// ScopeSet is a fixed list of scopes, each given one bit, so that a caller's
// scopes can be compared with it, or intersected with it, per request without
// allocating. Build it with Add at load time; after that it is read-only and
// safe for concurrent use. The zero value is an empty set.
type ScopeSet struct {
	bits  map[string]uint64
	names []string // by bit
}

// Add puts scope in the set, if it is not there yet, and returns its bit. It
// refuses a scope that is not a scope-token (RFC 6749 §3.3) and a 65th scope.
func (s *ScopeSet) Add(scope string) (uint64, error) {
	if !ValidScope(scope) {
		return 0, fmt.Errorf("%q is not a scope (RFC 6749 §3.3: printable ASCII, no space, '\"' or '\\')", scope)
	}
	if bit, ok := s.bits[scope]; ok {
		return bit, nil
	}
	if len(s.names) == MaxScopeSet {
		return 0, fmt.Errorf("more than %d distinct scopes", MaxScopeSet)
	}
	if s.bits == nil {
		s.bits = map[string]uint64{}
	}
	bit := uint64(1) << len(s.names)
	s.bits[scope] = bit
	s.names = append(s.names, scope)
	return bit, nil
}

// Len is the number of scopes in the set.
func (s *ScopeSet) Len() int { return len(s.names) }

// Names returns the scopes whose bits are in mask, in the order they were added.
func (s *ScopeSet) Names(mask uint64) []string {
	var out []string
	for i, n := range s.names {
		if mask&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// Mask returns the bits of the set's scopes that the caller holds, reading the
// caller's scopes as filter.Identity.Scopes does (the "scope" claim,
// space-separated or a list; else "scp"), without allocating for those shapes.
func (s *ScopeSet) Mask(id *filter.Identity) uint64 {
	if id == nil {
		return 0
	}
	for _, name := range [...]string{"scope", "scp"} {
		v, ok := id.Claims[name]
		if !ok {
			continue
		}
		switch t := v.(type) {
		case string:
			if m, ascii := s.stringMask(t); ascii {
				return m
			}
		case []any:
			if t != nil {
				var m uint64
				for _, e := range t {
					if str, isStr := e.(string); isStr {
						m |= s.bits[str]
					}
				}
				return m
			}
		case []string:
			if t != nil {
				return s.sliceMask(t)
			}
		}
		// An unusual shape (a number, null, non-ASCII spaces): let Identity say
		// what it means.
		return s.sliceMask(id.Scopes())
	}
	return 0
}

func (s *ScopeSet) sliceMask(scopes []string) uint64 {
	var m uint64
	for _, sc := range scopes {
		m |= s.bits[sc]
	}
	return m
}

// stringMask splits an ASCII string on white space as strings.Fields does, and
// reports false for a non-ASCII one (whose Unicode spaces strings.Fields knows).
func (s *ScopeSet) stringMask(str string) (uint64, bool) {
	var m uint64
	start := -1
	for i := 0; i <= len(str); i++ {
		if i < len(str) && str[i] >= 0x80 {
			return 0, false
		}
		if i == len(str) || asciiSpace(str[i]) {
			if start >= 0 {
				m |= s.bits[str[start:i]]
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return m, true
}

func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
