package route

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/gateway/config"
)

// Rule is one routable rule: the hosts of its Route, its match, and an opaque
// value (for the gateway, the compiled action and filter chain) that Match returns.
type Rule[T any] struct {
	// Hosts are exact names ("api.example.com") or wildcards ("*.example.com");
	// empty means the rule is a catch-all. Case does not matter.
	Hosts []string
	Match config.Match
	Value T
}

// CompileError is one problem with one rule: Rule is the index in the slice given
// to Compile and Field the path inside the rule ("match.path.regex",
// "match.headers[1].regex", "hosts[0]"), so the caller can map it to a file line.
type CompileError struct {
	Rule  int
	Field string
	Err   error
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("rule %d: %s: %v", e.Rule, e.Field, e.Err)
}

func (e *CompileError) Unwrap() error { return e.Err }

// Table is a compiled route table. It is immutable and safe for concurrent use.
type Table[T any] struct {
	rules  []rule
	values []T
	exact  map[string]*bucket // by host name
	wild   map[string]*bucket // by suffix with its dot: "*.example.com" under ".example.com"
	any    *bucket            // rules without hosts; nil if there are none
}

// Compile builds a table from rules in declaration order. It checks every rule and
// reports every problem: with one problem the error is that *CompileError, with
// several it is errors.Join of them (each a *CompileError; errors.As finds the
// first). Regular expressions and templates are compiled here, once.
func Compile[T any](rules []Rule[T]) (*Table[T], error) {
	if len(rules) > math.MaxInt32 {
		return nil, fmt.Errorf("route: %d rules, more than a table holds", len(rules))
	}
	t := &Table[T]{
		rules:  make([]rule, len(rules)),
		values: make([]T, len(rules)),
	}
	hosts := make([][]string, len(rules))
	var errs []error
	for i := range rules {
		ru, es := compileRule(i, &rules[i].Match)
		errs = append(errs, es...)
		t.rules[i] = ru
		t.values[i] = rules[i].Value
		for j, h := range rules[i].Hosts {
			name, err := normaliseHost(h)
			if err != nil {
				errs = append(errs, &CompileError{Rule: i, Field: fmt.Sprintf("hosts[%d]", j), Err: err})
				continue
			}
			hosts[i] = append(hosts[i], name)
		}
	}
	switch len(errs) {
	case 0:
	case 1:
		return nil, errs[0]
	default:
		return nil, errors.Join(errs...)
	}
	for i := range t.rules {
		id, ru := int32(i), &t.rules[i]
		if len(hosts[i]) == 0 {
			if t.any == nil {
				t.any = newBucket()
			}
			t.any.add(id, ru)
			continue
		}
		for _, h := range hosts[i] {
			m := &t.exact
			if strings.HasPrefix(h, "*.") {
				m, h = &t.wild, h[1:]
			}
			if *m == nil {
				*m = make(map[string]*bucket)
			}
			b := (*m)[h]
			if b == nil {
				b = newBucket()
				(*m)[h] = b
			}
			b.add(id, ru)
		}
	}
	for i := range t.rules {
		t.rules[i].index = nil // only needed to build the tries
	}
	return t, nil
}

// normaliseHost lower-cases a host pattern and drops a trailing dot (the
// absolute form of the same name), and refuses wildcards other than "*.suffix".
func normaliseHost(h string) (string, error) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	name := strings.TrimPrefix(h, "*.")
	if name == "" || strings.Contains(name, "*") {
		return "", fmt.Errorf("%q: want a host name or a wildcard of whole leading labels, as in *.example.com", h)
	}
	return h, nil
}

// Len returns the number of rules in the table.
func (t *Table[T]) Len() int {
	if t == nil {
		return 0
	}
	return len(t.rules)
}

// Match returns the value of the first rule, in declaration order, of the most
// specific host bucket whose whole match succeeds, with the variables its path
// template captured. host is lower-cased and has no port; a trailing dot is
// ignored. path is normalised (no dot segments) and has no query. Headers,
// method and query come from r, which may be nil when no rule needs them.
//
// It does not allocate unless the winning rule captures template variables (one
// allocation, the Params) or a candidate has query matchers (the parsed query).
func (t *Table[T]) Match(host, path string, r *http.Request) (T, Params, bool) {
	var zero T
	if t == nil {
		return zero, nil, false
	}
	b := t.bucket(host)
	if b == nil {
		return zero, nil, false
	}
	var stack [maxInlineLists][]int32
	lists := b.lists(path, stack[:0])
	st := reqState{r: r}
	var buf [8]span
	for {
		// Merge the sorted lists: take the smallest head. There are only as many
		// lists as the path has indexed segments, so a linear pick is cheapest.
		best, id := -1, int32(0)
		for j, l := range lists {
			if len(l) > 0 && (best < 0 || l[0] < id) {
				best, id = j, l[0]
			}
		}
		if best < 0 {
			return zero, nil, false
		}
		lists[best] = lists[best][1:]
		if ps, ok := t.rules[id].match(path, &st, buf[:]); ok {
			return t.values[id], ps, true
		}
	}
}

// bucket picks the most specific bucket that exists for host: the exact name,
// else the wildcard with the longest suffix, else the catch-all. A wildcard
// "*.example.com" covers one or more labels ("a.example.com", "a.b.example.com")
// but not "example.com" itself.
func (t *Table[T]) bucket(host string) *bucket {
	if n := len(host); n > 1 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if b := t.exact[host]; b != nil {
		return b
	}
	if t.wild != nil {
		// Leftmost dot first: that is the longest suffix. A dot at 0 would leave
		// an empty first label, which no wildcard covers.
		for i := 1; i < len(host); i++ {
			if host[i] == '.' {
				if b := t.wild[host[i:]]; b != nil {
					return b
				}
			}
		}
	}
	return t.any
}
