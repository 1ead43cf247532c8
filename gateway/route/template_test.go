package route_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/route"
)

func TestParseTemplateErrors(t *testing.T) {
	cases := []struct {
		name, tmpl string
		offset     int
		why        string
	}{
		{"empty", "", 0, "starts with '/'"},
		{"relative", "users/{id}", 0, "starts with '/'"},
		{"root only", "/", 1, "empty segment"},
		{"trailing slash", "/users/", 7, "empty segment"},
		{"double slash", "/a//b", 3, "empty segment"},
		{"unclosed variable", "/users/{id", 10, "not closed"},
		{"nested variable", "/v1/{a={b}}", 7, "nested"},
		{"duplicate variable", "/{a}/{a}", 6, "defined twice"},
		{"empty variable name", "/{}", 2, "variable name"},
		{"bad variable name", "/{1a}", 2, "variable name"},
		{"dangling dot in name", "/{a.}", 4, "variable name"},
		{"empty variable pattern", "/{a=}", 4, "empty segment"},
		{"double star not last", "/a/**/b", 6, "last segment"},
		{"double star not last in variable", "/{a=**}/b", 8, "last segment"},
		{"double star then variable", "/{a=x/**/y}", 9, "last segment"},
		{"triple star", "/***", 3, "unexpected '*'"},
		{"star glued to literal", "/a*", 2, "unexpected '*'"},
		{"empty verb", "/a:", 3, "empty segment"},
		{"segment after verb", "/a:b/c", 4, "unexpected '/'"},
		{"colon in variable", "/{a=x:y}", 5, "not closed"},
		{"bad percent escape", "/a%2", 2, "percent escape"},
		{"non-hex percent escape", "/a%zz", 2, "percent escape"},
		{"space", "/a b", 2, "unexpected ' '"},
		{"non-ascii", "/caf\u00e9", 4, "unexpected"},
		{"query", "/a?b", 2, "unexpected '?'"},
		{"stray close brace", "/a}", 2, "unexpected '}'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := route.ParseTemplate(c.tmpl)
			if err == nil {
				t.Fatalf("ParseTemplate(%q) = %v, want an error", c.tmpl, got)
			}
			te, ok := err.(*route.TemplateError)
			if !ok {
				t.Fatalf("error %v is a %T", err, err)
			}
			if te.Offset != c.offset || !strings.Contains(te.Reason, c.why) || te.Template != c.tmpl {
				t.Errorf("got offset %d reason %q; want offset %d reason containing %q", te.Offset, te.Reason, c.offset, c.why)
			}
		})
	}
}

func TestTemplateMatch(t *testing.T) {
	type pm = route.Params
	cases := []struct {
		name, tmpl, path string
		ok               bool
		params           pm
	}{
		{"literal", "/v1/users", "/v1/users", true, nil},
		{"literal mismatch", "/v1/users", "/v1/user", false, nil},
		{"literal no trailing slash", "/v1/users", "/v1/users/", false, nil},
		{"star", "/v1/*", "/v1/x", true, nil},
		{"star not empty", "/v1/*", "/v1/", false, nil},
		{"star one segment", "/v1/*", "/v1/x/y", false, nil},
		{"var", "/users/{id}", "/users/7", true, pm{{Name: "id", Value: "7"}}},
		{"var field path", "/users/{user.id}", "/users/7", true, pm{{Name: "user.id", Value: "7"}}},
		{"two vars", "/u/{u}/p/{p}", "/u/a/p/b", true, pm{{Name: "u", Value: "a"}, {Name: "p", Value: "b"}}},
		{"nested pattern", "/v1/{name=shelves/*/books/*}", "/v1/shelves/s/books/b", true, pm{{Name: "name", Value: "shelves/s/books/b"}}},
		{"nested pattern literal mismatch", "/v1/{name=shelves/*}", "/v1/racks/s", false, nil},
		{"double star many", "/f/{p=**}", "/f/a/b/c", true, pm{{Name: "p", Value: "a/b/c"}}},
		{"double star none", "/f/{p=**}", "/f", true, pm{{Name: "p", Value: ""}}},
		{"double star empty segment", "/f/{p=**}", "/f/", true, pm{{Name: "p", Value: ""}}},
		{"double star keeps trailing slash", "/f/{p=**}", "/f/a/", true, pm{{Name: "p", Value: "a/"}}},
		{"double star in pattern none", "/f/{p=a/**}", "/f/a", true, pm{{Name: "p", Value: "a"}}},
		{"double star in pattern many", "/f/{p=a/**}", "/f/a/b/c", true, pm{{Name: "p", Value: "a/b/c"}}},
		{"bare double star", "/**", "/", true, nil},
		{"var after literal and before var", "/a/{x}/b/{y=**}", "/a/1/b/2/3", true, pm{{Name: "x", Value: "1"}, {Name: "y", Value: "2/3"}}},
		{"verb", "/v1/{name}:cancel", "/v1/op1:cancel", true, pm{{Name: "name", Value: "op1"}}},
		{"verb missing", "/v1/{name}:cancel", "/v1/op1", false, nil},
		{"verb other", "/v1/{name}:cancel", "/v1/op1:undo", false, nil},
		{"verb on empty segment", "/v1/{name=**}:cancel", "/v1/op1/:cancel", false, nil},
		{"verb after double star", "/v1/{name=**}:cancel", "/v1/a/b:cancel", true, pm{{Name: "name", Value: "a/b"}}},
		{"verb after zero double star", "/v1/{name=**}:cancel", "/v1:cancel", true, pm{{Name: "name", Value: ""}}},
		{"no verb: colon is data", "/v1/{name}", "/v1/a:b", true, pm{{Name: "name", Value: "a:b"}}},
		{"no verb: literal with colon differs", "/v1/items", "/v1/items:list", false, nil},
		{"percent escapes not decoded", "/a/{x}", "/a/b%2Fc", true, pm{{Name: "x", Value: "b%2Fc"}}},
		{"escaped literal compared bytewise", "/a%20b", "/a%20b", true, nil},
		{"relative path", "/a", "a", false, nil},
		{"empty path", "/a", "", false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tp, err := route.ParseTemplate(c.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			ps, ok := tp.Match(c.path)
			if ok != c.ok || !equalParams(ps, c.params) {
				t.Errorf("%s.Match(%q) = %v, %v; want %v, %v", c.tmpl, c.path, ps, ok, c.params, c.ok)
			}
		})
	}
}

func TestTemplateString(t *testing.T) {
	cases := []struct{ in, want, verb, vars string }{
		{"/v1/users", "/v1/users", "", ""},
		{"/users/{id=*}", "/users/{id}", "", "id"},
		{"/v1/{name=shelves/*}/books/{book}:get", "/v1/{name=shelves/*}/books/{book}:get", "get", "name,book"},
		{"/f/{p=**}", "/f/{p=**}", "", "p"},
		{"/*/**", "/*/**", "", ""},
		{"/{a.b=x}", "/{a.b=x}", "", "a.b"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			tp, err := route.ParseTemplate(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := tp.String(); got != c.want {
				t.Errorf("String() = %q, want %q", got, c.want)
			}
			if tp.Verb() != c.verb || strings.Join(tp.Vars(), ",") != c.vars {
				t.Errorf("Verb() = %q, Vars() = %v; want %q, %q", tp.Verb(), tp.Vars(), c.verb, c.vars)
			}
		})
	}
}

func TestParamsGet(t *testing.T) {
	ps := route.Params{{Name: "a", Value: "1"}, {Name: "b", Value: ""}}
	if v, ok := ps.Get("a"); !ok || v != "1" {
		t.Errorf("Get(a) = %q, %v", v, ok)
	}
	if v, ok := ps.Get("b"); !ok || v != "" {
		t.Errorf("Get(b) = %q, %v", v, ok)
	}
	if _, ok := ps.Get("c"); ok {
		t.Error("Get(c) found a value")
	}
}
