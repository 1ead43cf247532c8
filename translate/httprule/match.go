package httprule

import (
	"fmt"
	"slices"
	"strings"
)

// Binding is one HTTP method and path template that reaches a gRPC method: the
// primary pattern of a google.api.http rule or one of its additional_bindings.
type Binding struct {
	// Selector is the gRPC method's full name ("library.v1.Library.GetBook").
	Selector string
	// Method is the HTTP method ("GET", or a custom rule's kind).
	Method   string
	Template *Template
	// Body is "" (no body), "*" (the whole request message) or a field path
	// ("book") of the request message.
	Body string
	// ResponseBody is "" (the whole response message) or a field path of the
	// response message whose value alone is the HTTP body.
	ResponseBody string
	// Index is 0 for the rule's own pattern and i+1 for additional_bindings[i].
	Index int
}

// String names the binding for messages: "GET /v1/{name=shelves/*} (library.v1.Library.GetShelf)".
func (b *Binding) String() string {
	return fmt.Sprintf("%s %s (%s)", b.Method, b.Template, b.Selector)
}

// Result is how a match ended.
type Result uint8

const (
	// Found: the binding and values are set.
	Found Result = iota
	// NotFound: no binding has a template matching the path.
	NotFound
	// MethodNotAllowed: the path matches a binding of another HTTP method.
	MethodNotAllowed
	// BadPath: the path has a malformed percent-encoding where a variable
	// captures it.
	BadPath
)

// Match is a found binding and the values of its template's variables, in the
// order of Template.Variables, unescaped (a multi-segment variable keeps "%2F").
type Match struct {
	Binding *Binding
	Values  []string
}

// Matcher finds the binding of a request. It is immutable and safe for concurrent use.
type Matcher struct {
	byMethod map[string][]*Binding
}

// Compile builds a matcher from bindings. Two bindings with the same method,
// template and verb are a conflict and an error naming both. Within a method,
// bindings are tried most specific first: at the first segment where two templates
// differ, a literal wins over '*' and '*' over '**'; a template with a verb is
// tried before one without.
func Compile(bindings []*Binding) (*Matcher, error) {
	m := &Matcher{byMethod: map[string][]*Binding{}}
	seen := map[string]*Binding{}
	for _, b := range bindings {
		if b.Template == nil || b.Method == "" {
			return nil, fmt.Errorf("binding of %s: method and template are required", b.Selector)
		}
		key := b.Method + " " + shape(b.Template)
		if prior, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s conflicts with %s: both match the same requests", b, prior)
		}
		seen[key] = b
		m.byMethod[b.Method] = append(m.byMethod[b.Method], b)
	}
	for _, list := range m.byMethod {
		slices.SortStableFunc(list, func(a, b *Binding) int { return compareSpecificity(a.Template, b.Template) })
	}
	return m, nil
}

// shape is a template with variable names removed: two templates with the same
// shape match the same paths.
func shape(t *Template) string {
	var b strings.Builder
	for _, s := range t.Segments {
		b.WriteByte('/')
		switch s.Kind {
		case Literal:
			b.WriteString(s.Text)
		case Wildcard:
			b.WriteString("*")
		case DeepWildcard:
			b.WriteString("**")
		}
	}
	if t.Verb != "" {
		b.WriteString(":" + t.Verb)
	}
	return b.String()
}

func compareSpecificity(a, b *Template) int {
	for i := 0; i < len(a.Segments) && i < len(b.Segments); i++ {
		if d := int(a.Segments[i].Kind) - int(b.Segments[i].Kind); d != 0 {
			return d
		}
	}
	switch {
	case a.Verb != "" && b.Verb == "":
		return -1
	case a.Verb == "" && b.Verb != "":
		return 1
	}
	return len(b.Segments) - len(a.Segments)
}

// maxPathSegments bounds the work of one match; a longer path matches nothing.
const maxPathSegments = 256

// Match finds the binding for method and escapedPath (the path as sent, percent
// escapes kept: url.URL.EscapedPath).
func (m *Matcher) Match(method, escapedPath string) (Match, Result) {
	if !strings.HasPrefix(escapedPath, "/") || strings.Count(escapedPath, "/") > maxPathSegments {
		return Match{}, NotFound
	}
	comps := strings.Split(escapedPath[1:], "/")
	for _, b := range m.byMethod[method] {
		vals, res := matchTemplate(b.Template, comps)
		switch res {
		case Found:
			return Match{Binding: b, Values: vals}, Found
		case BadPath:
			return Match{}, BadPath
		}
	}
	for other, list := range m.byMethod {
		if other == method {
			continue
		}
		for _, b := range list {
			if _, res := matchTemplate(b.Template, comps); res == Found {
				return Match{}, MethodNotAllowed
			}
		}
	}
	return Match{}, NotFound
}

// matchTemplate matches path components against t. comps is not modified.
func matchTemplate(t *Template, comps []string) ([]string, Result) {
	last := comps[len(comps)-1]
	if t.Verb != "" {
		// The verb follows the last unescaped ':' (an escaped one, %3A, is part of
		// the segment), and is compared unescaped like any literal.
		i := strings.LastIndexByte(last, ':')
		if i <= 0 {
			return nil, NotFound
		}
		verb := last[i+1:]
		if strings.IndexByte(verb, '%') >= 0 {
			u, err := unescape(verb, true)
			if err != nil {
				return nil, NotFound
			}
			verb = u
		}
		if verb != t.Verb {
			return nil, NotFound
		}
		last = last[:i]
	}
	at := func(i int) string {
		if i == len(comps)-1 {
			return last
		}
		return comps[i]
	}
	n := len(comps)
	segs := t.Segments
	deep := len(segs) > 0 && segs[len(segs)-1].Kind == DeepWildcard
	if deep && n < len(segs)-1 || !deep && n != len(segs) {
		return nil, NotFound
	}
	for i, s := range segs {
		switch s.Kind {
		case Literal:
			c := at(i)
			if strings.IndexByte(c, '%') >= 0 {
				u, err := unescape(c, true)
				if err != nil {
					return nil, NotFound
				}
				c = u
			}
			if c != s.Text {
				return nil, NotFound
			}
		case Wildcard:
			if at(i) == "" {
				return nil, NotFound
			}
		}
	}
	if len(t.Variables) == 0 {
		return nil, Found
	}
	vals := make([]string, len(t.Variables))
	for j, v := range t.Variables {
		end := v.End
		if deep && end == len(segs) {
			end = n
		}
		var raw string
		if end-v.Start == 1 {
			raw = at(v.Start)
		} else {
			parts := make([]string, 0, end-v.Start)
			for i := v.Start; i < end; i++ {
				parts = append(parts, at(i))
			}
			raw = strings.Join(parts, "/")
		}
		// A one-segment variable gets every escape decoded; a wider one keeps
		// "%2F" so that an escaped slash stays apart from the separators.
		single := v.End-v.Start == 1 && segs[v.Start].Kind != DeepWildcard
		u, err := unescape(raw, single)
		if err != nil {
			return nil, BadPath
		}
		vals[j] = u
	}
	return vals, Found
}

// Bindings returns every binding of the matcher, for listing and docs, sorted by
// method then template.
func (m *Matcher) Bindings() []*Binding {
	var out []*Binding
	for _, list := range m.byMethod {
		out = append(out, list...)
	}
	slices.SortFunc(out, func(a, b *Binding) int {
		if c := strings.Compare(a.Method, b.Method); c != 0 {
			return c
		}
		return strings.Compare(a.Template.String(), b.Template.String())
	})
	return out
}

// Allowed lists the HTTP methods with a binding that matches escapedPath, sorted,
// for the Allow header of a 405 (RFC 9110 §15.5.6).
func (m *Matcher) Allowed(escapedPath string) []string {
	if !strings.HasPrefix(escapedPath, "/") || strings.Count(escapedPath, "/") > maxPathSegments {
		return nil
	}
	comps := strings.Split(escapedPath[1:], "/")
	var out []string
	for method, list := range m.byMethod {
		for _, b := range list {
			if _, res := matchTemplate(b.Template, comps); res == Found {
				out = append(out, method)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}
