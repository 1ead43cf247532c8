package route_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/route"
)

// Helpers to write rules tersely. Every rule's value is its name, so a test can
// say which rule won.

func r(value string, hosts []string, m config.Match) route.Rule[string] {
	return route.Rule[string]{Hosts: hosts, Match: m, Value: value}
}

func hosts(h ...string) []string { return h }

func exact(p string) config.Match  { return config.Match{Path: &config.PathMatch{Exact: p}} }
func prefix(p string) config.Match { return config.Match{Path: &config.PathMatch{Prefix: p}} }
func regex(p string) config.Match  { return config.Match{Path: &config.PathMatch{Regex: p}} }
func tmpl(p string) config.Match   { return config.Match{Path: &config.PathMatch{Template: p}} }

func compile(t testing.TB, rules ...route.Rule[string]) *route.Table[string] {
	t.Helper()
	tab, err := route.Compile(rules)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tab
}

// req builds a request; target may carry a query string.
func req(method, target string, header ...string) *http.Request {
	rq := httptest.NewRequest(method, "http://x"+target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		rq.Header.Add(header[i], header[i+1])
	}
	return rq
}

type probe struct {
	name string
	host string
	path string
	r    *http.Request // nil: GET with no headers
	want string        // "" means no match
}

func run(t *testing.T, tab *route.Table[string], probes []probe) {
	t.Helper()
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			rq := p.r
			if rq == nil {
				rq = req("GET", p.path)
			}
			got, _, ok := tab.Match(p.host, p.path, rq)
			if !ok {
				got = ""
			}
			if got != p.want {
				t.Errorf("Match(%q, %q) = %q, want %q", p.host, p.path, got, p.want)
			}
		})
	}
}

func TestHostPrecedence(t *testing.T) {
	tab := compile(t,
		r("catch-all", nil, prefix("/")),
		r("wild", hosts("*.example.com"), prefix("/")),
		r("wild-long", hosts("*.b.example.com"), prefix("/")),
		r("exact", hosts("API.example.com"), prefix("/")),
		r("exact-b", hosts("a.b.example.com"), exact("/only")),
		r("apex", hosts("example.com."), prefix("/")),
	)
	run(t, tab, []probe{
		{name: "exact beats wildcard", host: "api.example.com", path: "/x", want: "exact"},
		{name: "exact ignores trailing dot", host: "api.example.com.", path: "/x", want: "exact"},
		{name: "wildcard one label", host: "w.example.com", path: "/x", want: "wild"},
		{name: "wildcard several labels", host: "x.y.z.example.com", path: "/x", want: "wild"},
		{name: "longer wildcard suffix wins", host: "c.b.example.com", path: "/x", want: "wild-long"},
		{name: "wildcard covers not the apex", host: "b.example.com", path: "/x", want: "wild"},
		{name: "apex is exact", host: "example.com", path: "/x", want: "apex"},
		{name: "no bucket: catch-all", host: "other.org", path: "/x", want: "catch-all"},
		{name: "empty host: catch-all", host: "", path: "/x", want: "catch-all"},
		{name: "empty first label is no wildcard match", host: ".example.com", path: "/x", want: "catch-all"},
		{name: "suffix without dot boundary", host: "notexample.com", path: "/x", want: "catch-all"},
		{name: "exact bucket, rule matches", host: "a.b.example.com", path: "/only", want: "exact-b"},
		{name: "no fall-through from exact bucket", host: "a.b.example.com", path: "/other", want: ""},
	})
}

func TestNoFallThroughFromWildcard(t *testing.T) {
	tab := compile(t,
		r("wild", hosts("*.example.com"), exact("/a")),
		r("catch-all", nil, prefix("/")),
	)
	run(t, tab, []probe{
		{name: "wildcard hit", host: "x.example.com", path: "/a", want: "wild"},
		{name: "wildcard miss is final", host: "x.example.com", path: "/b", want: ""},
		{name: "other host", host: "x.example.org", path: "/b", want: "catch-all"},
	})
	empty := compile(t, r("only", hosts("a.com"), prefix("/")))
	run(t, empty, []probe{{name: "no catch-all", host: "b.com", path: "/", want: ""}})
}

func TestFirstRuleWins(t *testing.T) {
	tab := compile(t,
		r("0-root-template", nil, tmpl("/{a}/x")),
		r("1-prefix", nil, prefix("/api")),
		r("2-exact", nil, exact("/api/v1/users")),
		r("3-regex", nil, regex("/api/v1/[a-z]+")),
		r("4-deep-prefix", nil, prefix("/api/v1")),
		r("5-any", nil, config.Match{}),
	)
	run(t, tab, []probe{
		{name: "earlier root template beats later exact", path: "/api/x", want: "0-root-template"},
		{name: "earlier short prefix beats later exact", path: "/api/v1/users", want: "1-prefix"},
		{name: "no path matcher matches any path", path: "/zzz", want: "5-any"},
		{name: "non-slash path still reaches root rules", path: "*", want: "5-any"},
	})
	tab = compile(t,
		r("0-exact", nil, exact("/api/v1/users")),
		r("1-regex", nil, regex("/api/v1/[a-z]+")),
		r("2-template", nil, tmpl("/api/{ver}/{res}")),
		r("3-prefix", nil, prefix("/api")),
	)
	run(t, tab, []probe{
		{name: "exact first", path: "/api/v1/users", want: "0-exact"},
		{name: "regex next", path: "/api/v1/books", want: "1-regex"},
		{name: "template after regex fails", path: "/api/v2/books", want: "2-template"},
		{name: "prefix last", path: "/api/v2/books/1", want: "3-prefix"},
		{name: "nothing", path: "/apiv2", want: ""},
	})
}

func TestPathMatchers(t *testing.T) {
	cases := []struct {
		name  string
		match config.Match
		hit   []string
		miss  []string
	}{
		{"exact", exact("/a/b"), []string{"/a/b"}, []string{"/a/b/", "/a", "/a/bc", "/A/b"}},
		{"prefix segment-aware", prefix("/api"), []string{"/api", "/api/", "/api/x", "/api/x/y"}, []string{"/apix", "/ap", "/", "/x/api"}},
		{"prefix with slash as written", prefix("/api/"), []string{"/api/", "/api/x"}, []string{"/api", "/apix"}},
		{"prefix root", prefix("/"), []string{"/", "/x", "/x/y"}, []string{"*", ""}},
		{"prefix deep", prefix("/a/b"), []string{"/a/b", "/a/b/c"}, []string{"/a/bc", "/a", "/a/"}},
		{"regex anchored", regex("/api/[0-9]+"), []string{"/api/1", "/api/123"}, []string{"/api/", "/api/1/x", "/x/api/1", "/api/1a"}},
		{"regex alternation anchored", regex("/a|/b"), []string{"/a", "/b"}, []string{"/ab", "/a/b", "/bx"}},
		{"regex case-insensitive", regex("(?i)/api/v1"), []string{"/API/V1", "/api/v1"}, []string{"/api/v2"}},
		{"regex no literal", regex(".*/health"), []string{"/health", "/a/b/health"}, []string{"/healthz"}},
		{"regex literal then class", regex("/api/v1x[0-9]"), []string{"/api/v1x1"}, []string{"/api/v1x", "/api/v1/1"}},
		{"regex non-ASCII literal", regex("/caf\u00e9/[0-9]"), []string{"/caf\u00e9/1"}, []string{"/cafe/1"}},
		{"regex U+FFFD matches an invalid byte", regex(`/\x{FFFD}/x`), []string{"/\xff/x", "/\ufffd/x"}, []string{"/a/x"}},
		{"template", tmpl("/users/{id}"), []string{"/users/7"}, []string{"/users", "/users/", "/users/7/x"}},
		{"template verb", tmpl("/v1/{name=projects/*}:cancel"), []string{"/v1/projects/p:cancel"}, []string{"/v1/projects/p", "/v1/projects/p:undo"}},
		{"template verb only literal", tmpl("/v1/items:batchGet"), []string{"/v1/items:batchGet"}, []string{"/v1/items"}},
		{"template double star", tmpl("/files/**"), []string{"/files", "/files/", "/files/a/b"}, []string{"/file", "/filesx"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab := compile(t, r("hit", nil, c.match))
			for _, p := range c.hit {
				if _, _, ok := tab.Match("h", p, req("GET", "/")); !ok {
					t.Errorf("path %q: no match, want a match", p)
				}
			}
			for _, p := range c.miss {
				if v, _, ok := tab.Match("h", p, req("GET", "/")); ok {
					t.Errorf("path %q: matched %q, want no match", p, v)
				}
			}
		})
	}
}

func TestTemplateParams(t *testing.T) {
	tab := compile(t,
		r("user", nil, tmpl("/users/{id}")),
		r("book", nil, tmpl("/v1/{name=shelves/*/books/*}:get")),
		r("file", nil, tmpl("/files/{path=**}")),
		r("static", nil, exact("/static")),
	)
	cases := []struct {
		name, path, want string
		params           route.Params
	}{
		{"single", "/users/42", "user", route.Params{{Name: "id", Value: "42"}}},
		{"nested with verb", "/v1/shelves/s1/books/b2:get", "book", route.Params{{Name: "name", Value: "shelves/s1/books/b2"}}},
		{"double star", "/files/a/b/c.txt", "file", route.Params{{Name: "path", Value: "a/b/c.txt"}}},
		{"double star empty", "/files", "file", route.Params{{Name: "path", Value: ""}}},
		{"no template no params", "/static", "static", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ps, ok := tab.Match("h", c.path, nil)
			if !ok || got != c.want {
				t.Fatalf("Match(%q) = %q, %v; want %q", c.path, got, ok, c.want)
			}
			if !equalParams(ps, c.params) {
				t.Errorf("params = %v, want %v", ps, c.params)
			}
		})
	}
}

func equalParams(a, b route.Params) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMethodsHeadersQuery(t *testing.T) {
	tab := compile(t,
		r("get-only", nil, config.Match{Path: &config.PathMatch{Exact: "/m"}, Methods: []string{"GET", "PUT"}}),
		r("post", nil, config.Match{Path: &config.PathMatch{Exact: "/m"}}),
		r("hdr-exact", nil, config.Match{Path: &config.PathMatch{Exact: "/h"}, Headers: []config.ValueMatch{{Name: "x-ENV", Exact: "canary"}}}),
		r("hdr-regex", nil, config.Match{Path: &config.PathMatch{Exact: "/h"}, Headers: []config.ValueMatch{{Name: "X-Env", Regex: "v[0-9]"}}}),
		r("hdr-present", nil, config.Match{Path: &config.PathMatch{Exact: "/h"}, Headers: []config.ValueMatch{{Name: "X-Debug", Present: true}}}),
		r("hdr-absent", nil, config.Match{Path: &config.PathMatch{Exact: "/h"}, Headers: []config.ValueMatch{{Name: "Authorization", Absent: true}}}),
		r("q-exact", nil, config.Match{Path: &config.PathMatch{Exact: "/q"}, Query: []config.ValueMatch{{Name: "v", Exact: "a b"}}}),
		r("q-regex", nil, config.Match{Path: &config.PathMatch{Exact: "/q"}, Query: []config.ValueMatch{{Name: "v", Regex: "[0-9]+"}}}),
		r("q-present", nil, config.Match{Path: &config.PathMatch{Exact: "/q"}, Query: []config.ValueMatch{{Name: "debug", Present: true}}}),
		r("q-absent", nil, config.Match{Path: &config.PathMatch{Exact: "/q"}, Query: []config.ValueMatch{{Name: "V", Absent: true}}}),
	)
	run(t, tab, []probe{
		{name: "method listed", path: "/m", r: req("PUT", "/m"), want: "get-only"},
		{name: "method not listed", path: "/m", r: req("POST", "/m"), want: "post"},
		{name: "GET does not imply HEAD", path: "/m", r: req("HEAD", "/m"), want: "post"},
		{name: "header name case-insensitive", path: "/h", r: req("GET", "/h", "X-Env", "canary"), want: "hdr-exact"},
		{name: "header exact is whole value", path: "/h", r: req("GET", "/h", "X-Env", "canary2", "Authorization", "x"), want: ""},
		{name: "header any of several values", path: "/h", r: req("GET", "/h", "X-Env", "prod", "x-env", "canary"), want: "hdr-exact"},
		{name: "header regex anchored", path: "/h", r: req("GET", "/h", "X-Env", "v1"), want: "hdr-regex"},
		{name: "header regex not partial", path: "/h", r: req("GET", "/h", "X-Env", "xv1", "Authorization", "x"), want: ""},
		{name: "header present empty value", path: "/h", r: req("GET", "/h", "X-Debug", ""), want: "hdr-present"},
		{name: "header absent", path: "/h", r: req("GET", "/h"), want: "hdr-absent"},
		{name: "header absent fails when present", path: "/h", r: req("GET", "/h", "Authorization", "x"), want: ""},
		{name: "query exact decoded", path: "/q", r: req("GET", "/q?v=a+b"), want: "q-exact"},
		{name: "query repeated key any value", path: "/q", r: req("GET", "/q?v=x&v=12"), want: "q-regex"},
		{name: "query regex anchored", path: "/q", r: req("GET", "/q?v=12x&V=1"), want: ""},
		{name: "query present empty value", path: "/q", r: req("GET", "/q?v=z&debug"), want: "q-present"},
		{name: "query names case-sensitive", path: "/q", r: req("GET", "/q?v=z"), want: "q-absent"},
		{name: "query absent fails when present", path: "/q", r: req("GET", "/q?V=1"), want: ""},
		{name: "bad pair ignored, good pair kept", path: "/q", r: req("GET", "/q?x=%zz&v=7"), want: "q-regex"},
	})
}

func TestNilRequest(t *testing.T) {
	tab := compile(t,
		r("needs-method", nil, config.Match{Methods: []string{"GET"}}),
		r("needs-header", nil, config.Match{Headers: []config.ValueMatch{{Name: "X-A", Present: true}}}),
		r("header-absent", nil, config.Match{Headers: []config.ValueMatch{{Name: "X-A", Absent: true}}, Query: []config.ValueMatch{{Name: "q", Absent: true}}}),
	)
	got, _, ok := tab.Match("h", "/", nil)
	if !ok || got != "header-absent" {
		t.Errorf("Match with nil request = %q, %v; want header-absent", got, ok)
	}
	var none *route.Table[string]
	if _, _, ok := none.Match("h", "/", nil); ok || none.Len() != 0 {
		t.Error("nil table matched")
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name  string
		rule  route.Rule[string]
		field string
		why   string
	}{
		{"bad path regex", r("x", nil, regex("/a(")), "match.path.regex", "missing closing )"},
		{"unbalanced regex cannot escape anchors", r("x", nil, regex("/a)|(/b")), "match.path.regex", "unexpected )"},
		{"bad template", r("x", nil, tmpl("/a/{id")), "match.path.template", "not closed"},
		{"two path kinds", r("x", nil, config.Match{Path: &config.PathMatch{Exact: "/a", Prefix: "/a"}}), "match.path", "exactly one"},
		{"no path kind", r("x", nil, config.Match{Path: &config.PathMatch{}}), "match.path", "exactly one"},
		{"relative prefix", r("x", nil, prefix("api")), "match.path.prefix", "must start with '/'"},
		{"relative exact", r("x", nil, exact("api")), "match.path.exact", "must start with '/'"},
		{"bad header regex", r("x", nil, config.Match{Headers: []config.ValueMatch{{Name: "A", Present: true}, {Name: "B", Regex: "["}}}), "match.headers[1].regex", "missing closing ]"},
		{"header two kinds", r("x", nil, config.Match{Headers: []config.ValueMatch{{Name: "A", Present: true, Absent: true}}}), "match.headers[0]", "exactly one"},
		{"header without name", r("x", nil, config.Match{Headers: []config.ValueMatch{{Present: true}}}), "match.headers[0].name", "required"},
		{"host header", r("x", nil, config.Match{Headers: []config.ValueMatch{{Name: "host", Exact: "a"}}}), "match.headers[0].name", "hosts"},
		{"bad query regex", r("x", nil, config.Match{Query: []config.ValueMatch{{Name: "q", Regex: "a**"}}}), "match.query[0].regex", "invalid nested repetition"},
		{"empty method", r("x", nil, config.Match{Methods: []string{"GET", ""}}), "match.methods[1]", "empty"},
		{"bad wildcard", r("x", hosts("a.com", "a.*.com"), prefix("/")), "hosts[1]", "wildcard"},
		{"bare wildcard", r("x", hosts("*."), prefix("/")), "hosts[0]", "wildcard"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			good := r("good", nil, prefix("/"))
			_, err := route.Compile([]route.Rule[string]{good, good, c.rule})
			var ce *route.CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *CompileError", err, err)
			}
			if ce.Rule != 2 || ce.Field != c.field || !strings.Contains(ce.Err.Error(), c.why) {
				t.Errorf("got rule %d field %q err %q; want rule 2 field %q containing %q", ce.Rule, ce.Field, ce.Err, c.field, c.why)
			}
		})
	}
}

func TestCompileErrorsAllReported(t *testing.T) {
	_, err := route.Compile([]route.Rule[string]{
		r("a", nil, regex("(")),
		r("b", nil, prefix("/")),
		r("c", nil, tmpl("/x/**/y")),
	})
	multi, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %v is not a joined error", err)
	}
	var got []string
	for _, e := range multi.Unwrap() {
		ce, ok := e.(*route.CompileError)
		if !ok {
			t.Fatalf("%v is a %T, not a *CompileError", e, e)
		}
		got = append(got, ce.Field)
		if ce.Rule != 0 && ce.Rule != 2 {
			t.Errorf("unexpected rule %d", ce.Rule)
		}
	}
	if strings.Join(got, ",") != "match.path.regex,match.path.template" {
		t.Errorf("fields = %v", got)
	}
	var te *route.TemplateError
	if !errors.As(err, &te) || te.Offset != 6 {
		t.Errorf("template error %v: want a *TemplateError at offset 6", te)
	}
}

// TestHostListedTwice guards the bucket's duplicate filter: a rule that names
// one host twice must still be found once and keep its place in the order.
func TestHostListedTwice(t *testing.T) {
	tab := compile(t,
		r("first", hosts("a.com", "A.COM"), exact("/x")),
		r("second", hosts("a.com"), prefix("/")),
	)
	run(t, tab, []probe{
		{name: "first", host: "a.com", path: "/x", want: "first"},
		{name: "second", host: "a.com", path: "/y", want: "second"},
	})
}

func TestManySegmentsBeyondInlineLists(t *testing.T) {
	// A rule on every level of a 40-segment path: more candidate lists than
	// Match keeps on its stack. The deepest-declared-first one must still win.
	var rules []route.Rule[string]
	p := ""
	for i := 0; i < 40; i++ {
		p += "/s"
		rules = append(rules, r(p, nil, config.Match{Path: &config.PathMatch{Prefix: p}, Methods: []string{"POST"}}))
	}
	rules = append(rules, r("last", nil, prefix(p)))
	tab := compile(t, rules...)
	if got, _, _ := tab.Match("h", p+"/end", req("GET", "/")); got != "last" {
		t.Errorf("GET = %q, want last", got)
	}
	if got, _, _ := tab.Match("h", p+"/end", req("POST", "/")); got != "/s" {
		t.Errorf("POST = %q, want /s", got)
	}
}

// TestConcurrentMatch runs Match from several goroutines on one table, for the
// race detector: per-request state (query, captures) must live in the call.
func TestConcurrentMatch(t *testing.T) {
	tab := compile(t,
		r("q", nil, config.Match{Path: &config.PathMatch{Template: "/t/{id}"}, Query: []config.ValueMatch{{Name: "v", Present: true}}}),
		r("t", nil, tmpl("/t/{id}")),
	)
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 200; i++ {
				id := string(rune('a' + (g+i)%26))
				target := "/t/" + id
				want := "t"
				if i%2 == 0 {
					target += "?v=1"
					want = "q"
				}
				got, ps, ok := tab.Match("h", "/t/"+id, req("GET", target))
				if v, _ := ps.Get("id"); !ok || got != want || v != id {
					done <- fmt.Errorf("%s: got %q %v %v", target, got, ps, ok)
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
