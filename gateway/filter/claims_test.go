package filter_test

import (
	"reflect"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
)

// testClaims is a token's claims as JSON decoding gives them.
func testClaims() map[string]any {
	return map[string]any{
		"sub":   "u1",
		"scope": "read write",
		"org":   map[string]any{"id": "acme", "team": map[string]any{"name": "core"}},
		"roles": []any{"admin", "dev"},
		// A namespaced claim whose name has dots, next to an object that a
		// walk of the same path would reach.
		"https://x.test/id": "flat",
		"https://x":         map[string]any{"test/id": "nested"},
		"a.b":               "flat-ab",
		"a":                 map[string]any{"b": "nested-ab", "c": "nested-ac"},
		"":                  "empty-name",
	}
}

func TestClaimPathLookup(t *testing.T) {
	claims := testClaims()
	for _, tc := range []struct {
		name, path string
		want       any // nil: not found
	}{
		{name: "top level", path: "sub", want: "u1"},
		{name: "one step into an object", path: "org.id", want: "acme"},
		{name: "two steps", path: "org.team.name", want: "core"},
		{name: "the object itself", path: "org.team", want: map[string]any{"name": "core"}},
		{name: "own name with dots before the walk", path: "a.b", want: "flat-ab"},
		{name: "walk when the own name is absent", path: "a.c", want: "nested-ac"},
		{name: "URI-named claim", path: "https://x.test/id", want: "flat"},
		{name: "empty name", path: "", want: "empty-name"},
		{name: "missing", path: "email"},
		{name: "missing step", path: "org.missing"},
		{name: "step into a string", path: "scope.x"},
		{name: "step into an array", path: "roles.0"},
		{name: "trailing dot", path: "org."},
		{name: "leading dot", path: ".org"},
		{name: "too deep", path: "org.id.x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filter.NewClaimPath(tc.path)
			if p.Name() != tc.path {
				t.Errorf("Name() = %q, want %q", p.Name(), tc.path)
			}
			got, ok := p.Lookup(claims)
			if ok != (tc.want != nil) {
				t.Fatalf("Lookup(%q) = %v, %v; want found = %v", tc.path, got, ok, tc.want != nil)
			}
			if tc.want == nil {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Lookup(%q) = %#v, want %#v", tc.path, got, tc.want)
			}
			// Identity reads claims the same way.
			id := &filter.Identity{Claims: claims}
			if s, isStr := tc.want.(string); isStr {
				if got, ok := id.Claim(tc.path); !ok || got != s {
					t.Errorf("Identity.Claim(%q) = %q, %v; want %q like ClaimPath", tc.path, got, ok, s)
				}
			}
		})
	}
}

func TestClaimPathNoClaims(t *testing.T) {
	for _, path := range []string{"sub", "org.id", ""} {
		if v, ok := filter.NewClaimPath(path).Lookup(nil); ok {
			t.Errorf("Lookup(%q) in a nil map = %v, want nothing", path, v)
		}
	}
	var zero filter.ClaimPath
	if v, ok := zero.Lookup(map[string]any{"": "x"}); !ok || v != "x" {
		t.Errorf("the zero ClaimPath found %v, %v; want the claim named \"\"", v, ok)
	}
}

func TestClaimPathLookupAllocatesNothing(t *testing.T) {
	claims := testClaims()
	for _, path := range []string{"sub", "org.team.name", "a.b", "org.missing", "scope.x"} {
		p := filter.NewClaimPath(path)
		if n := testing.AllocsPerRun(100, func() { p.Lookup(claims) }); n != 0 {
			t.Errorf("Lookup(%q): %v allocations, want 0", path, n)
		}
	}
	id := &filter.Identity{Claims: claims}
	if n := testing.AllocsPerRun(100, func() { id.Claim("org.team.name") }); n != 0 {
		t.Errorf("Identity.Claim: %v allocations, want 0", n)
	}
}

func BenchmarkClaimPathLookup(b *testing.B) {
	claims := testClaims()
	for _, path := range []string{"sub", "org.team.name"} {
		p := filter.NewClaimPath(path)
		b.Run(path, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := p.Lookup(claims); !ok {
					b.Fatal("not found")
				}
			}
		})
	}
}

func TestClaimHeaderValue(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		want string
		ok   bool
	}{
		{name: "string", in: "alice@example.com", want: "alice@example.com", ok: true},
		{name: "string with a comma", in: "Doe, Jane", want: "Doe, Jane", ok: true},
		{name: "string with a tab", in: "a\tb", want: "a\tb", ok: true},
		{name: "integer number", in: float64(42), want: "42", ok: true},
		{name: "fraction", in: 1.5, want: "1.5", ok: true},
		{name: "large number without exponent", in: 1e21, want: "1000000000000000000000", ok: true},
		{name: "boolean", in: false, want: "false", ok: true},
		{name: "array", in: []any{"admin", float64(2), true}, want: "admin, 2, true", ok: true},
		{name: "empty array", in: []any{}, want: "", ok: true},
		{name: "array element with a comma", in: []any{"a,b", "c"}},
		{name: "nested array", in: []any{"a", []any{"b"}}},
		{name: "array of objects", in: []any{map[string]any{"x": "y"}}},
		{name: "array element with a newline", in: []any{"a\nb"}},
		{name: "object", in: map[string]any{"id": "acme"}},
		{name: "null", in: nil},
		{name: "Go int, not a JSON number", in: 3},
		{name: "newline", in: "a\r\nX-Admin: true"},
		{name: "NUL", in: "a\x00"},
		{name: "DEL", in: "a\x7f"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := filter.ClaimHeaderValue(tc.in)
			if ok != tc.ok || got != tc.want {
				t.Errorf("ClaimHeaderValue(%#v) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}
