package authz_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
)

// benchDecide measures one request through the filter to a matching rule deep in
// apiRules: method and path matching over the rules before it, issuer, scopes
// and a nested claim. It must not allocate, allowed or refused.
func benchDecide(b *testing.B, method, path string, id *filter.Identity, wantErr bool) {
	f := filtertest.MustBuild(b, "authz", apiRules, filtertest.WithBuild(func(bb *filter.Build) { bb.Events = discard{} }))
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	r := httptest.NewRequest(method, "http://api.example.com"+path, nil)
	r = filter.WithIdentity(r, id)
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r); (err != nil) != wantErr {
		b.Fatalf("err = %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

var benchCaller = caller(idp, map[string]any{
	"scope": "openid profile email orders.read orders.write",
	"org":   map[string]any{"id": "globex"},
})

func BenchmarkAllowed(b *testing.B) {
	benchDecide(b, "POST", "/v1/orders/42/items", benchCaller, false)
}

func BenchmarkRefusedScope(b *testing.B) {
	benchDecide(b, "GET", "/v1/reports/2024", benchCaller, true)
}

// discard is an event sink that keeps nothing, so that a benchmark of refusals
// measures the filter, not a growing slice.
type discard struct{}

func (discard) SecurityEvent(string, string, string) {}
