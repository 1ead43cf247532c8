package jwt_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
)

// benchVerify measures one accepted request through the filter: header parsing,
// JWS decoding, key lookup, signature verification, claim checks and the request
// copy with mapped claim headers; or, with the verified-token cache on, a hash, a
// lookup, the exp check and the request copy.
func benchVerify(b *testing.B, extra string, token func(testing.TB) string) {
	srv := newJWKS(b)
	f := mustBuild(b, issuerConfig(srv.URL, extra), buildOpts{})
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	r := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r.Header.Set("Authorization", bearer(token(b)))
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ServeHTTP(w, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRS256(b *testing.B) {
	benchVerify(b, "cacheVerified: false", func(t testing.TB) string { return rs256(t, claims()) })
}

func BenchmarkVerifyES256(b *testing.B) {
	benchVerify(b, "cacheVerified: false", func(t testing.TB) string { return es256(t, claims()) })
}

func BenchmarkVerifyCachedRS256(b *testing.B) {
	benchVerify(b, "", func(t testing.TB) string { return rs256(t, claims()) })
}

func BenchmarkVerifyCachedES256(b *testing.B) {
	benchVerify(b, "", func(t testing.TB) string { return es256(t, claims()) })
}
