package httprule_test

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"

	"github.com/portcullis/portcullis/translate/httprule"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in    string
		shape string // kinds: L=literal, *, **; then vars as field[start,end)
		verb  string
		vars  string
	}{
		{in: "/v1/books", shape: "L L"},
		{in: "/v1/{name}", shape: "L *", vars: "name[1,2)"},
		{in: "/v1/{name=shelves/*/books/*}", shape: "L L * L *", vars: "name[1,5)"},
		{in: "/v1/{book.name=shelves/*}/x", shape: "L L * L", vars: "book.name[1,3)"},
		{in: "/v1/{name=**}", shape: "L **", vars: "name[1,2)"},
		{in: "/v1/*/{a}/{b.c}:cancel", shape: "L * * *", verb: "cancel", vars: "a[2,3) b.c[3,4)"},
		{in: "/v1/a%20b", shape: "L L"},
		{in: "/**", shape: "**"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			tmpl, err := httprule.Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, s := range tmpl.Segments {
				kinds = append(kinds, map[httprule.SegmentKind]string{httprule.Literal: "L", httprule.Wildcard: "*", httprule.DeepWildcard: "**"}[s.Kind])
			}
			if got := strings.Join(kinds, " "); got != tc.shape {
				t.Errorf("segments %q, want %q", got, tc.shape)
			}
			if tmpl.Verb != tc.verb {
				t.Errorf("verb %q, want %q", tmpl.Verb, tc.verb)
			}
			var vars []string
			for _, v := range tmpl.Variables {
				vars = append(vars, v.Field()+"["+itoa(v.Start)+","+itoa(v.End)+")")
			}
			if got := strings.Join(vars, " "); got != tc.vars {
				t.Errorf("variables %q, want %q", got, tc.vars)
			}
			if tmpl.String() != tc.in {
				t.Errorf("String() = %q", tmpl.String())
			}
		})
	}
	if tmpl, _ := httprule.Parse("/v1/a%20b"); tmpl.Segments[1].Text != "a b" {
		t.Errorf("literal not unescaped: %q", tmpl.Segments[1].Text)
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestParseErrors(t *testing.T) {
	tests := map[string]string{
		"":                    "must start with '/'",
		"v1/books":            "must start with '/'",
		"/v1//books":          "empty segment",
		"/v1/books/":          "empty segment",
		"/v1/{name":           "expected '=' or '}'",
		"/v1/{}":              "expected a field name",
		"/v1/{1a}":            "expected a field name",
		"/v1/{a={b}}":         "variables cannot nest",
		"/v1/**/books":        "'**' must be the last segment",
		"/v1/{a}/{a}":         `field "a" is bound twice`,
		"/v1/books:":          "empty verb",
		"/v1/bo oks":          `character ' ' is not allowed`,
		"/v1/%zz":             "malformed percent-encoding",
		"/v1/{a.}":            "expected a field name",
		"/v1/{a=}":            "empty segment",
		"/v1/books:x:y":       "unexpected ':'",
		"/v1/{a}x":            "unexpected 'x'",
		"/v1/{name=shelves/*": "unclosed variable",
	}
	for in, want := range tests {
		_, err := httprule.Parse(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", in, err, want)
		}
	}
	if _, err := httprule.Parse("/" + strings.Repeat("a", 5000)); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("an over-long template: %v", err)
	}
}

func mustBindings(t *testing.T, rules map[string]*annotations.HttpRule) []*httprule.Binding {
	t.Helper()
	var out []*httprule.Binding
	names := make([]string, 0, len(rules))
	for n := range rules {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		bs, err := httprule.FromRule(n, rules[n])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bs...)
	}
	return out
}

func get(p string) *annotations.HttpRule {
	return &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: p}}
}

func TestMatch(t *testing.T) {
	rules := map[string]*annotations.HttpRule{
		"Get":     get("/v1/{name=shelves/*/books/*}"),
		"GetSpec": get("/v1/shelves/special/books/{book}"),
		"List": {Pattern: &annotations.HttpRule_Get{Get: "/v1/{parent=shelves/*}/books"},
			AdditionalBindings: []*annotations.HttpRule{get("/v1/books")}},
		"Create":  {Pattern: &annotations.HttpRule_Post{Post: "/v1/{parent=shelves/*}/books"}, Body: "book"},
		"Archive": {Pattern: &annotations.HttpRule_Post{Post: "/v1/{name=shelves/*/books/*}:archive"}, Body: "*"},
		"Files":   get("/v1/files/{path=**}"),
		"Any":     {Pattern: &annotations.HttpRule_Custom{Custom: &annotations.CustomHttpPattern{Kind: "HEAD", Path: "/v1/{name=shelves/*}"}}},
	}
	m, err := httprule.Compile(mustBindings(t, rules))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		want         httprule.Result
		sel          string
		vals         []string
	}{
		{"GET", "/v1/shelves/s1/books/b1", httprule.Found, "Get", []string{"shelves/s1/books/b1"}},
		{"GET", "/v1/shelves/special/books/b1", httprule.Found, "GetSpec", []string{"b1"}},
		{"GET", "/v1/shelves/s1/books", httprule.Found, "List", []string{"shelves/s1"}},
		{"GET", "/v1/books", httprule.Found, "List", nil},
		{"POST", "/v1/shelves/s%201/books", httprule.Found, "Create", []string{"shelves/s 1"}},
		{"POST", "/v1/shelves/s1/books/b1:archive", httprule.Found, "Archive", []string{"shelves/s1/books/b1"}},
		{"POST", "/v1/shelves/s1/books/:archive", httprule.MethodNotAllowed, "", nil}, // GET {name=shelves/*/books/*} takes ":archive" as a name
		{"GET", "/v1/files/a/b%2Fc/d", httprule.Found, "Files", []string{"a/b%2Fc/d"}},
		{"GET", "/v1/files/", httprule.Found, "Files", []string{""}},
		{"GET", "/v1/shelves/s1/books/b1/x", httprule.NotFound, "", nil},
		{"DELETE", "/v1/shelves/s1/books/b1", httprule.MethodNotAllowed, "", nil},
		{"GET", "/v2/books", httprule.NotFound, "", nil},
		{"GET", "v1/books", httprule.NotFound, "", nil},
		{"GET", "/v1/shelves//books", httprule.NotFound, "", nil},
		{"GET", "/v1/shelves/%zz/books", httprule.BadPath, "", nil},
		{"HEAD", "/v1/shelves/s1", httprule.Found, "Any", []string{"shelves/s1"}},
		{"GET", "/v1/%62ooks", httprule.Found, "List", nil},
	}
	for _, tc := range tests {
		got, res := m.Match(tc.method, tc.path)
		if res != tc.want {
			t.Errorf("%s %s: result %d, want %d", tc.method, tc.path, res, tc.want)
			continue
		}
		if res != httprule.Found {
			continue
		}
		if got.Binding.Selector != tc.sel || !slices.Equal(got.Values, tc.vals) {
			t.Errorf("%s %s: got %s %q, want %s %q", tc.method, tc.path, got.Binding.Selector, got.Values, tc.sel, tc.vals)
		}
	}
	if n := len(m.Bindings()); n != 8 {
		t.Errorf("Bindings() has %d entries, want 8", n)
	}
}

func TestSingleSegmentVariableDecodesSlash(t *testing.T) {
	m, err := httprule.Compile(mustBindings(t, map[string]*annotations.HttpRule{"Get": get("/v1/books/{id}")}))
	if err != nil {
		t.Fatal(err)
	}
	got, res := m.Match("GET", "/v1/books/a%2Fb")
	if res != httprule.Found || got.Values[0] != "a/b" {
		t.Fatalf("got %v %q, want the escaped slash decoded in a one-segment variable", res, got.Values)
	}
}

func TestCompileConflicts(t *testing.T) {
	_, err := httprule.Compile(mustBindings(t, map[string]*annotations.HttpRule{
		"A": get("/v1/{name=books/*}"),
		"B": get("/v1/books/{id}"),
	}))
	if err == nil || !strings.Contains(err.Error(), "conflicts with") {
		t.Fatalf("want a conflict error, got %v", err)
	}
}

func TestFromRuleErrors(t *testing.T) {
	tests := []struct {
		rule *annotations.HttpRule
		want string
	}{
		{&annotations.HttpRule{}, "no pattern"},
		{&annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/v1/x"}, Body: "*"}, "GET cannot have a body"},
		{&annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/x"}, Body: "a..b"}, "neither"},
		{&annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/x"}, ResponseBody: "1x"}, "response_body"},
		{&annotations.HttpRule{Pattern: &annotations.HttpRule_Custom{Custom: &annotations.CustomHttpPattern{Kind: "", Path: "/x"}}}, "custom.kind"},
		{&annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/v1/x"},
			AdditionalBindings: []*annotations.HttpRule{{Pattern: &annotations.HttpRule_Get{Get: "bad"}}}}, "additional_bindings[0]"},
		{&annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/v1/x"},
			AdditionalBindings: []*annotations.HttpRule{{Pattern: &annotations.HttpRule_Get{Get: "/y"},
				AdditionalBindings: []*annotations.HttpRule{get("/z")}}}}, "cannot have additional bindings"},
	}
	for _, tc := range tests {
		_, err := httprule.FromRule("pkg.S.M", tc.rule)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "pkg.S.M") {
			t.Errorf("FromRule(%v) = %v, want an error naming the method and containing %q", tc.rule, err, tc.want)
		}
	}
}

// FuzzParseTemplate checks that Parse never panics, and that whatever it accepts
// compiles and matches a path built from the template itself.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"/v1/books", "/v1/{name=shelves/*/books/*}", "/v1/{a.b}:verb", "/**", "/v1/{x=**}",
		"/a/*/b", "/%41/{a}", "/{a={b}}", "/v1/**/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		tmpl, err := httprule.Parse(in)
		if err != nil {
			return
		}
		m, err := httprule.Compile([]*httprule.Binding{{Selector: "s", Method: "GET", Template: tmpl}})
		if err != nil {
			t.Fatalf("parsed template %q does not compile: %v", in, err)
		}
		var b strings.Builder
		for _, s := range tmpl.Segments {
			b.WriteByte('/')
			switch s.Kind {
			case httprule.Literal:
				b.WriteString(escapeSegment(s.Text))
			default:
				b.WriteString("x")
			}
		}
		if tmpl.Verb != "" {
			b.WriteString(":" + escapeSegment(tmpl.Verb))
		}
		if got, res := m.Match("GET", b.String()); res != httprule.Found || len(got.Values) != len(tmpl.Variables) {
			t.Fatalf("template %q does not match its own path %q: %v", in, b.String(), res)
		}
	})
}

func escapeSegment(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
		}
	}
	return b.String()
}
