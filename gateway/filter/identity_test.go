package filter

import (
	"net/http/httptest"
	"slices"
	"testing"
)

func TestIdentityClaims(t *testing.T) {
	id := &Identity{Subject: "u1", Claims: map[string]any{
		"scope":             "read write",
		"org":               map[string]any{"id": "acme", "size": float64(12), "paid": true},
		"roles":             []any{"admin", "dev", float64(3)},
		"https://x.test/id": "dotted-name",
	}}
	for path, want := range map[string]string{"org.id": "acme", "org.size": "12", "org.paid": "true", "https://x.test/id": "dotted-name"} {
		if got, ok := id.Claim(path); !ok || got != want {
			t.Errorf("Claim(%q) = %q, %v; want %q", path, got, ok, want)
		}
	}
	for _, path := range []string{"org", "roles", "missing", "org.missing", "scope.x", ""} {
		if got, ok := id.Claim(path); ok {
			t.Errorf("Claim(%q) = %q, want no string value", path, got)
		}
	}
	if got := id.ClaimValues("roles"); !slices.Equal(got, []string{"admin", "dev"}) {
		t.Errorf("ClaimValues(roles) = %q", got)
	}
	if got := id.Scopes(); !slices.Equal(got, []string{"read", "write"}) {
		t.Errorf("Scopes() = %q", got)
	}
	scp := &Identity{Claims: map[string]any{"scp": []any{"a", "b"}}}
	if got := scp.Scopes(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Scopes() from scp = %q", got)
	}
	var none *Identity
	if _, ok := none.Claim("sub"); ok || none.Scopes() != nil {
		t.Error("a nil identity has claims")
	}
}

func TestIdentityContext(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	if _, ok := IdentityFrom(r.Context()); ok {
		t.Fatal("identity on a fresh request")
	}
	id := &Identity{Source: "jwt", Subject: "u1"}
	r2 := WithIdentity(r, id)
	if got, ok := IdentityFrom(r2.Context()); !ok || got != id {
		t.Errorf("IdentityFrom = %v, %v", got, ok)
	}
	if _, ok := IdentityFrom(r.Context()); ok {
		t.Error("WithIdentity changed the original request")
	}
}
