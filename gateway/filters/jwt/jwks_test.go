package jwt_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/portcullis/portcullis/gateway/filters/jwt"
)

func TestJWKSDownAfterFirstFetch(t *testing.T) {
	srv := newJWKS(t)
	f := mustBuild(t, issuerConfig(srv.URL, ""), buildOpts{})
	if res := serve(t, f, bearer(rs256(t, claims())), nil); res.status != 200 {
		t.Fatalf("before the outage: got %d %s", res.status, res.reason)
	}
	srv.down.Store(true)
	jwt.Refresh(f, issuerName)
	if res := serve(t, f, bearer(es256(t, claims())), nil); res.status != 200 {
		t.Errorf("endpoint answering 503: got %d %s, want the cached keys used", res.status, res.reason)
	}
	srv.Close() // now refusing connections
	jwt.Refresh(f, issuerName)
	if res := serve(t, f, bearer(rs256(t, claims())), nil); res.status != 200 {
		t.Errorf("endpoint gone: got %d %s, want the cached keys used", res.status, res.reason)
	}
	if got := jwt.KeyIDs(f, issuerName); !slices.Equal(got, []string{"ec1", "rsa1"}) {
		t.Errorf("keys after failed refreshes: %v", got)
	}
}

func TestPersistedKeySet(t *testing.T) {
	dir := t.TempDir()
	srv := newJWKS(t)
	cfg := issuerConfig(srv.URL, "")
	f1 := mustBuild(t, cfg, buildOpts{dataDir: dir})
	if res := serve(t, f1, bearer(rs256(t, claims())), nil); res.status != 200 {
		t.Fatalf("first filter: got %d %s", res.status, res.reason)
	}
	var files []string
	waitFor(t, "the key set to be persisted", func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "*", "*.json"))
		return len(files) > 0
	})
	if len(files) != 1 {
		t.Fatalf("persisted key sets: %v, want one file", files)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("persisted file mode %v (%v), want 0600", fi.Mode(), err)
	}
	closeFilter(t, f1)

	// The endpoint is down when the next filter (a restart, or a reload) starts.
	srv.down.Store(true)
	hits := srv.hits.Load()
	f2 := mustBuild(t, cfg, buildOpts{dataDir: dir})
	if res := serve(t, f2, bearer(es256(t, claims())), nil); res.status != 200 {
		t.Errorf("endpoint down at start with a persisted set: got %d %s", res.status, res.reason)
	}
	waitFor(t, "the refresher to try the endpoint", func() bool { return srv.hits.Load() > hits })

	// Without a data directory there is nothing to fall back on: 401, never 5xx.
	f3 := mustBuild(t, cfg, buildOpts{})
	if res := serve(t, f3, bearer(es256(t, claims())), nil); res.status != 401 || res.reason != "jwt_unknown_kid" {
		t.Errorf("endpoint down at start, nothing persisted: got %d %s, want 401 jwt_unknown_kid", res.status, res.reason)
	}

	// A corrupt persisted file is ignored, not trusted and not fatal.
	os.WriteFile(files[0], []byte(`{"keys":[{"kty":"oct","k":"AAAA"}]}`), 0o600)
	f4 := mustBuild(t, cfg, buildOpts{dataDir: dir})
	if res := serve(t, f4, bearer(es256(t, claims())), nil); res.status != 401 {
		t.Errorf("corrupt persisted set: got %d %s, want 401", res.status, res.reason)
	}
}

func TestUnknownKidRefetchIsRateLimited(t *testing.T) {
	srv := newJWKS(t)
	f := mustBuild(t, issuerConfig(srv.URL, ""), buildOpts{})
	if res := serve(t, f, bearer(rs256(t, claims())), nil); res.status != 200 {
		t.Fatalf("got %d %s", res.status, res.reason)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("%d fetches after the first request, want 1", n)
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			kid := "unknown-" + string(rune('a'+i%26))
			res := serve(t, f, bearer(mint(t, gojwt.SigningMethodRS256, keys().attacker, kid, claims(), nil)), nil)
			if res.status != 401 || res.reason != "jwt_unknown_kid" {
				t.Errorf("kid %s: got %d %s", kid, res.status, res.reason)
			}
		})
	}
	wg.Wait()
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("%d fetches after 40 tokens with unknown kids, want 2 (one refetch per 30s)", n)
	}
}

func TestKeyRotation(t *testing.T) {
	k := keys()
	srv := newJWKS(t, rsaJWK("rsa1", &k.rsa.PublicKey))
	f := mustBuild(t, issuerConfig(srv.URL, ""), buildOpts{})
	if res := serve(t, f, bearer(rs256(t, claims())), nil); res.status != 200 {
		t.Fatalf("old key: got %d %s", res.status, res.reason)
	}
	// The issuer publishes a new key and starts signing with it at once.
	srv.set(rsaJWK("rsa1", &k.rsa.PublicKey), rsaJWK("rsa2", &k.rsa2.PublicKey))
	if res := serve(t, f, bearer(mint(t, gojwt.SigningMethodRS256, k.rsa2, "rsa2", claims(), nil)), nil); res.status != 200 {
		t.Errorf("new kid: got %d %s, want it fetched and accepted", res.status, res.reason)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
	// The old key is withdrawn: after the next scheduled refresh it no longer verifies.
	srv.set(rsaJWK("rsa2", &k.rsa2.PublicKey))
	jwt.Refresh(f, issuerName)
	if res := serve(t, f, bearer(rs256(t, claims())), nil); res.status != 401 || res.reason != "jwt_unknown_kid" {
		t.Errorf("withdrawn kid: got %d %s, want 401 jwt_unknown_kid", res.status, res.reason)
	}
}

func TestRedirectToAnotherHostRefused(t *testing.T) {
	other := newJWKS(t)
	redirect := httptest.NewServer(http.RedirectHandler(other.URL+"/jwks", http.StatusFound))
	defer redirect.Close()
	f := mustBuild(t, issuerConfig(redirect.URL, ""), buildOpts{})
	if res := serve(t, f, bearer(rs256(t, claims())), nil); res.status != 401 {
		t.Errorf("got %d %s, want 401: no keys from a redirect to another host", res.status, res.reason)
	}
	if n := other.hits.Load(); n != 0 {
		t.Errorf("the other host received %d requests", n)
	}
}

// TestKeySetParsing feeds a key set with one good key of each type and many bad
// ones: the bad are skipped, the good still verify.
func TestKeySetParsing(t *testing.T) {
	k := keys()
	small := rsaJWK("small", &k.rsa.PublicKey)
	small["n"] = b64(k.rsa.N.Bytes()[:128]) // 1024 bits
	offCurve := ecJWK("off", &k.ec.PublicKey)
	offCurve["y"] = offCurve["x"]
	private := ecJWK("private", &k.ec.PublicKey)
	private["d"] = "AAAA"
	enc := rsaJWK("enc", &k.rsa.PublicKey)
	enc["use"] = "enc"
	ops := rsaJWK("ops", &k.rsa.PublicKey)
	ops["key_ops"] = []string{"encrypt"}
	wrongAlg := ecJWK("wrongalg", &k.ec.PublicKey)
	wrongAlg["alg"] = "RS256"
	pinned := rsaJWK("pinned", &k.rsa.PublicKey)
	pinned["alg"] = "RS256"
	shortX := ecJWK("shortx", &k.ec.PublicKey)
	shortX["x"] = b64([]byte{1, 2, 3})
	bad := []map[string]any{
		{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
		{"kid": "nokty"},
		small, offCurve, private, enc, ops, wrongAlg, shortX,
		{"kty": "EC", "kid": "p224", "crv": "P-224", "x": "AA", "y": "AA"},
		{"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": b64(make([]byte, 32))},
		{"kty": "RSA", "kid": "noe", "n": b64(k.rsa.N.Bytes())},
	}
	lead0 := rsaJWK("lead0", &k.rsa2.PublicKey)
	lead0["n"] = b64(append([]byte{0}, k.rsa2.N.Bytes()...)) // a sign byte, as Java writes it
	good := []map[string]any{rsaJWK("rsa1", &k.rsa.PublicKey), ecJWK("ec1", &k.ec.PublicKey), pinned, lead0}
	f := mustBuild(t, strings.Replace(issuerConfig("x", ""), "jwksURI: x", "jwksFile: "+writeFile(t, jwksJSON(append(bad, good...)...)), 1), buildOpts{})
	if got := jwt.KeyIDs(f, issuerName); !slices.Equal(got, []string{"ec1", "lead0", "pinned", "rsa1"}) {
		t.Errorf("usable keys %v, want [ec1 lead0 pinned rsa1]", got)
	}
	if res := serve(t, f, bearer(mint(t, gojwt.SigningMethodRS256, k.rsa2, "lead0", claims(), nil)), nil); res.status != 200 {
		t.Errorf("key with a leading zero in n: got %d %s", res.status, res.reason)
	}
	for _, kid := range []string{"hmac", "small", "off", "private", "enc", "ops", "wrongalg"} {
		tok := mint(t, gojwt.SigningMethodRS256, k.rsa, kid, claims(), nil)
		if res := serve(t, f, bearer(tok), nil); res.status != 401 {
			t.Errorf("kid %s: got %d, want 401", kid, res.status)
		}
	}
	if res := serve(t, f, bearer(mint(t, gojwt.SigningMethodES256, k.ec, "private", claims(), nil)), nil); res.status != 401 {
		t.Errorf("key published with its private part: got %d, want 401", res.status)
	}
	if res := serve(t, f, bearer(mint(t, gojwt.SigningMethodRS256, k.rsa, "pinned", claims(), nil)), nil); res.status != 200 {
		t.Errorf("pinned RS256 key: got %d %s", res.status, res.reason)
	}
	// Two RSA keys fit RS256, so a token without kid is ambiguous.
	if res := serve(t, f, bearer(mint(t, gojwt.SigningMethodRS256, k.rsa, "", claims(), nil)), nil); res.status != 401 {
		t.Errorf("no kid with two fitting keys: got %d, want 401", res.status)
	}
}
