package edgetoken_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/edgetoken"
	"github.com/portcullis/portcullis/gateway/filter"
)

func scopeSet(t testing.TB, names ...string) *edgetoken.ScopeSet {
	t.Helper()
	var s edgetoken.ScopeSet
	for _, n := range names {
		if _, err := s.Add(n); err != nil {
			t.Fatal(err)
		}
	}
	return &s
}

// TestScopeShapes: the allocation-free reading of scopes must agree with
// filter.Identity.Scopes for every shape a token can give them.
func TestScopeShapes(t *testing.T) {
	s := scopeSet(t, "a", "b", "c:d", "e")
	// want is the mask computed from Identity.Scopes, the reference.
	want := func(id *filter.Identity) uint64 {
		var m uint64
		for i, n := range []string{"a", "b", "c:d", "e"} {
			if slices.Contains(id.Scopes(), n) {
				m |= 1 << i
			}
		}
		return m
	}
	shapes := []map[string]any{
		nil,
		{},
		{"scope": "a b"},
		{"scope": "  a\tb\n c:d  "},
		{"scope": ""},
		{"scope": "é a"},
		{"scope": "a\u00a0b"}, // a no-break space: Unicode white space
		{"scope": "ab a"},     // a prefix of a token is not the scope
		{"scope": []any{"a", 1, "c:d"}},
		{"scope": []string{"b"}},
		{"scope": []string(nil), "scp": []any{"a"}},
		{"scope": nil, "scp": "b"},
		{"scope": 7},
		{"scp": []any{"c:d", "x"}},
		{"scp": "a b"},
		{"scope": "x", "scp": "a"}, // scope wins, even without a known scope
	}
	nonzero := 0
	for i, c := range shapes {
		id := &filter.Identity{Claims: c}
		got, w := s.Mask(id), want(id)
		if got != w {
			t.Errorf("shape %d %#v: mask %b, Identity.Scopes gives %b", i, c, got, w)
		}
		if w != 0 {
			nonzero++
		}
	}
	if nonzero < 8 {
		t.Errorf("only %d shapes hold a known scope; the test would pass on a mask of zero", nonzero)
	}
	if got := s.Mask(nil); got != 0 {
		t.Errorf("Mask(nil) = %b", got)
	}
}

func TestScopeSet(t *testing.T) {
	var s edgetoken.ScopeSet
	a, errA := s.Add("orders.read")
	b, errB := s.Add("orders.write")
	again, errC := s.Add("orders.read")
	if errA != nil || errB != nil || errC != nil || a != 1 || b != 2 || again != 1 || s.Len() != 2 {
		t.Fatalf("bits %b %b %b, errors %v %v %v, len %d", a, b, again, errA, errB, errC, s.Len())
	}
	if got := s.Names(a | b); !slices.Equal(got, []string{"orders.read", "orders.write"}) {
		t.Errorf("Names = %v", got)
	}
	if got := s.Names(b); !slices.Equal(got, []string{"orders.write"}) {
		t.Errorf("Names(b) = %v", got)
	}
	for _, bad := range []string{"", "a b", `a"`, `a\`, "é"} {
		if _, err := s.Add(bad); err == nil || !strings.Contains(err.Error(), "not a scope") {
			t.Errorf("Add(%q) = %v", bad, err)
		}
	}
	for i := s.Len(); i < edgetoken.MaxScopeSet; i++ {
		if _, err := s.Add(fmt.Sprint("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Add("one-too-many"); err == nil || !strings.Contains(err.Error(), "more than 64") {
		t.Errorf("65th scope: %v", err)
	}
	if all := s.Names(^uint64(0)); len(all) != 64 || all[63] != "s63" {
		t.Errorf("Names(all) = %d names, last %q", len(all), all[len(all)-1])
	}
}

func BenchmarkScopeMask(b *testing.B) {
	s := scopeSet(b, "orders.read", "orders.write", "admin")
	id := &filter.Identity{Claims: map[string]any{"scope": "openid profile email orders.read orders.write"}}
	b.ReportAllocs()
	for b.Loop() {
		if s.Mask(id) != 3 {
			b.Fatal("wrong mask")
		}
	}
}
