package tokenmint_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
)

// benchMint measures one authenticated request through the filter: the caller's
// scopes narrowed, the cache key built, a token from the cache or freshly signed,
// and the copy of the request with the caller's credentials stripped.
func benchMint(b *testing.B, path, extra string) {
	f := mustBuild(b, "tokenmint", minterConfig(path, extra), nil)
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	r := filter.WithIdentity(request(), ann("openid orders.read profile"))
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

func BenchmarkCached(b *testing.B) { benchMint(b, keyFile(b, keys().edge1), "") }

func BenchmarkUncachedES256(b *testing.B) { benchMint(b, keyFile(b, keys().edge1), "cacheSize: 0") }

func BenchmarkUncachedRS256(b *testing.B) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "rsa.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		b.Fatal(err)
	}
	benchMint(b, path, "cacheSize: 0")
}
