package route

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"strings"

	"github.com/portcullis/portcullis/gateway/config"
)

// This file compiles one config.Match into a rule and tests a request against it.

type pathKind uint8

const (
	pathAny pathKind = iota // no path matcher
	pathExact
	pathPrefix
	pathRegex
	pathTemplate
)

type valueKind uint8

const (
	valueExact valueKind = iota
	valueRegex
	valuePresent
	valueAbsent
)

// valueMatcher is one header or query matcher. For headers, name is the canonical
// MIME key, so the lookup is a plain map index into http.Header.
type valueMatcher struct {
	name  string
	kind  valueKind
	value string
	re    *regexp.Regexp
}

type rule struct {
	methods []string
	kind    pathKind
	path    string // exact path or prefix
	re      *regexp.Regexp
	tmpl    *Template
	headers []valueMatcher
	query   []valueMatcher
	// index is where the rule sits in a bucket's segment trie (see index.go);
	// unused for exact paths, which are keyed by path.
	index []string
}

// reqState is per-Match lazily computed request data, so that the query string is
// parsed only when a candidate has query matchers, and then only once.
type reqState struct {
	r      *http.Request
	query  url.Values
	parsed bool
}

func (st *reqState) queryValues() url.Values {
	if !st.parsed {
		st.parsed = true
		if st.r != nil && st.r.URL != nil {
			// Pairs that do not decode are dropped, as Request.FormValue does; the
			// remaining ones are still matched.
			st.query, _ = url.ParseQuery(st.r.URL.RawQuery)
		}
	}
	return st.query
}

// match tests the whole rule. Cheap checks go first; a template's Params are built
// only once every other matcher has passed, so a rejected candidate allocates nothing.
func (ru *rule) match(path string, st *reqState, buf []span) (Params, bool) {
	if len(ru.methods) > 0 {
		if st.r == nil || !contains(ru.methods, st.r.Method) {
			return nil, false
		}
	}
	var caps []span
	switch ru.kind {
	case pathExact:
		if path != ru.path {
			return nil, false
		}
	case pathPrefix:
		if !prefixMatch(ru.path, path) {
			return nil, false
		}
	case pathRegex:
		if !ru.re.MatchString(path) {
			return nil, false
		}
	case pathTemplate:
		caps = ru.tmpl.capBuf(buf)
		if !ru.tmpl.match(path, caps) {
			return nil, false
		}
	}
	if len(ru.headers) > 0 {
		var h http.Header
		if st.r != nil {
			h = st.r.Header
		}
		for i := range ru.headers {
			if !ru.headers[i].match(h[ru.headers[i].name]) {
				return nil, false
			}
		}
	}
	if len(ru.query) > 0 {
		q := st.queryValues()
		for i := range ru.query {
			if !ru.query[i].match(q[ru.query[i].name]) {
				return nil, false
			}
		}
	}
	if ru.kind == pathTemplate {
		return ru.tmpl.params(path, caps), true
	}
	return nil, true
}

// prefixMatch is the segment-aware prefix test: "/api" matches "/api" and
// "/api/x" but not "/apix"; a prefix ending in '/' is a plain string prefix.
func prefixMatch(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// match tests the values of one header or query name. Each value (each header
// field line, each query pair) is tested on its own and one match suffices;
// values are not joined with commas first.
func (m *valueMatcher) match(values []string) bool {
	switch m.kind {
	case valuePresent:
		return len(values) > 0
	case valueAbsent:
		return len(values) == 0
	case valueExact:
		return contains(values, m.value)
	default:
		for _, v := range values {
			if m.re.MatchString(v) {
				return true
			}
		}
		return false
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// compileRule checks and compiles one rule's match. It returns every problem found,
// each as a *CompileError naming the field.
func compileRule(i int, m *config.Match) (rule, []error) {
	var ru rule
	var errs []error
	fail := func(field string, err error) {
		errs = append(errs, &CompileError{Rule: i, Field: field, Err: err})
	}
	if pm := m.Path; pm != nil {
		n := 0
		for _, s := range []string{pm.Exact, pm.Prefix, pm.Regex, pm.Template} {
			if s != "" {
				n++
			}
		}
		switch {
		case n != 1:
			fail("match.path", errors.New("exactly one of exact, prefix, regex and template is required"))
		case pm.Exact != "":
			ru.kind, ru.path = pathExact, pm.Exact
			if pm.Exact[0] != '/' {
				fail("match.path.exact", fmt.Errorf("%q must start with '/'", pm.Exact))
			}
		case pm.Prefix != "":
			ru.kind, ru.path = pathPrefix, pm.Prefix
			if pm.Prefix[0] != '/' {
				fail("match.path.prefix", fmt.Errorf("%q must start with '/'", pm.Prefix))
			}
			ru.index = prefixIndex(pm.Prefix)
		case pm.Regex != "":
			ru.kind = pathRegex
			re, err := compileAnchored(pm.Regex)
			if err != nil {
				fail("match.path.regex", err)
			}
			ru.re = re
			ru.index = regexIndex(pm.Regex)
		default:
			ru.kind = pathTemplate
			t, err := ParseTemplate(pm.Template)
			if err != nil {
				fail("match.path.template", err)
			} else {
				ru.tmpl = t
				ru.index = t.literalPrefix()
			}
		}
	}
	for j, meth := range m.Methods {
		if meth == "" {
			fail(fmt.Sprintf("match.methods[%d]", j), errors.New("empty method"))
		}
	}
	ru.methods = m.Methods
	ru.headers = compileValues(m.Headers, "headers", fail)
	ru.query = compileValues(m.Query, "query", fail)
	return ru, errs
}

func compileValues(list []config.ValueMatch, kind string, fail func(string, error)) []valueMatcher {
	if len(list) == 0 {
		return nil
	}
	out := make([]valueMatcher, len(list))
	for j, vm := range list {
		field := fmt.Sprintf("match.%s[%d]", kind, j)
		m := &out[j]
		m.name = vm.Name
		if kind == "headers" {
			// http.Header keys are canonical on server requests (HTTP/1 and HTTP/2).
			m.name = textproto.CanonicalMIMEHeaderKey(vm.Name)
			if m.name == "Host" {
				fail(field+".name", errors.New("the Host header is not in Request.Header; match it with hosts"))
			}
		}
		if vm.Name == "" {
			fail(field+".name", errors.New("required"))
		}
		n := 0
		for _, b := range []bool{vm.Exact != "", vm.Regex != "", vm.Present, vm.Absent} {
			if b {
				n++
			}
		}
		switch {
		case n != 1:
			fail(field, errors.New("exactly one of exact, regex, present and absent is required"))
		case vm.Exact != "":
			m.kind, m.value = valueExact, vm.Exact
		case vm.Regex != "":
			m.kind = valueRegex
			re, err := compileAnchored(vm.Regex)
			if err != nil {
				fail(field+".regex", err)
			}
			m.re = re
		case vm.Present:
			m.kind = valuePresent
		default:
			m.kind = valueAbsent
		}
	}
	return out
}

// compileAnchored compiles expr so that it must match the whole input. The
// expression is first compiled alone so that an unbalanced one ("a)|(b") cannot
// escape the anchoring group, and so that its error message names only the
// user's text.
func compileAnchored(expr string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}
