package jwt_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/portcullis/portcullis/gateway/filter"
)

const (
	issuerName = "https://id.example.com"
	audience   = "api.example.com"
)

// testKeys are generated once per test binary: RSA generation is slow under -race.
type testKeys struct {
	rsa, rsa2, attacker *rsa.PrivateKey
	ec                  *ecdsa.PrivateKey
	ec384               *ecdsa.PrivateKey
	ed                  ed25519.PrivateKey
}

var keys = sync.OnceValue(func() *testKeys {
	k := &testKeys{}
	var err error
	for _, p := range []**rsa.PrivateKey{&k.rsa, &k.rsa2, &k.attacker} {
		if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

var b64 = base64.RawURLEncoding.EncodeToString

func rsaJWK(kid string, pub *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
}

func ecJWK(kid string, pub *ecdsa.PublicKey) map[string]any {
	p, err := pub.Bytes() // 0x04 || x || y
	if err != nil {
		panic(err)
	}
	n := (len(p) - 1) / 2
	return map[string]any{"kty": "EC", "kid": kid, "crv": pub.Curve.Params().Name, "x": b64(p[1 : 1+n]), "y": b64(p[1+n:])}
}

func edJWK(kid string, pub ed25519.PublicKey) map[string]any {
	return map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(pub)}
}

func jwksJSON(ks ...map[string]any) []byte {
	if ks == nil {
		ks = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": ks})
	if err != nil {
		panic(err)
	}
	return b
}

// defaultJWKS is what a test JWKS server serves unless told otherwise.
func defaultJWKS() []map[string]any {
	k := keys()
	return []map[string]any{rsaJWK("rsa1", &k.rsa.PublicKey), ecJWK("ec1", &k.ec.PublicKey)}
}

// jwksServer is a real JWKS endpoint on 127.0.0.1 that counts its requests.
type jwksServer struct {
	*httptest.Server
	mu   sync.Mutex
	body []byte
	hits atomic.Int64
	down atomic.Bool   // answer 503
	hang chan struct{} // when set, requests block until it is closed
}

func newJWKS(t testing.TB, ks ...map[string]any) *jwksServer {
	s := &jwksServer{}
	if ks == nil {
		ks = defaultJWKS()
	}
	s.set(ks...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.hang != nil {
			select {
			case <-s.hang:
			case <-r.Context().Done():
			}
			return
		}
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		b := s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(ks ...map[string]any) {
	s.mu.Lock()
	s.body = jwksJSON(ks...)
	s.mu.Unlock()
}

// issuerConfig is a filter config with one issuer (RS256 and ES256) whose keys are
// at uri, mapping sub and roles to headers, followed by extra top-level lines.
func issuerConfig(uri, extra string) string {
	return fmt.Sprintf(`issuers:
  - issuer: %s
    audiences: [other.example.com, %s]
    algorithms: [RS256, ES256]
    jwksURI: %s
    claimsToHeaders:
      - {claim: sub, header: X-User}
      - {claim: roles, header: X-Roles}
      - {claim: tenant, header: X-Tenant}
%s`, issuerName, audience, uri, extra)
}

// claims returns valid claims for the test issuer and audience.
func claims() gojwt.MapClaims {
	now := time.Now()
	return gojwt.MapClaims{
		"iss": issuerName, "aud": []string{audience}, "sub": "user-42",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"jti": rand.Text(),
	}
}

// mint signs claims with method and key, kid in the header plus extra header
// parameters (a nil value deletes one).
func mint(t testing.TB, method gojwt.SigningMethod, key any, kid string, c gojwt.MapClaims, hdr map[string]any) string {
	t.Helper()
	tok := gojwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	for k, v := range hdr {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rs256(t testing.TB, c gojwt.MapClaims) string {
	return mint(t, gojwt.SigningMethodRS256, keys().rsa, "rsa1", c, nil)
}

func es256(t testing.TB, c gojwt.MapClaims) string {
	return mint(t, gojwt.SigningMethodES256, keys().ec, "ec1", c, nil)
}

// segment encodes v as a JWS segment (RFC 7515 §2: base64url of the JSON).
func segment(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b64(b)
}

// result is what the client and the upstream saw of one request.
type result struct {
	status    int
	reason    string
	challenge string
	upstream  http.Header // nil when the request did not reach the upstream
	verified  *filter.Identity
}

// serve runs one request with the given Authorization value ("" for none) through
// the filter in front of a terminal that records what the upstream would get. An
// error that is not a *filter.Error (the core would answer 500) fails the test.
func serve(t testing.TB, f filter.Filter, authz string, mod func(*http.Request)) result {
	t.Helper()
	var res result
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		res.upstream = r.Header.Clone()
		res.verified, _ = filter.IdentityFrom(r.Context())
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	req := httptest.NewRequest(http.MethodGet, "/orders", nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if mod != nil {
		mod(req)
	}
	before := req.Header.Clone()
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, req)
	res.status = rec.Code
	if err != nil {
		var fe *filter.Error
		if !errors.As(err, &fe) {
			t.Fatalf("the filter returned %v, which the core answers with 500", err)
		}
		res.status, res.reason = fe.Status, fe.Reason
	}
	res.challenge = rec.Header().Get("Www-Authenticate")
	if fmt.Sprint(before) != fmt.Sprint(req.Header) {
		t.Errorf("the filter changed the inbound request's headers in place: %v -> %v", before, req.Header)
	}
	return res
}

func bearer(tok string) string { return "Bearer " + tok }

// waitFor polls cond for up to 5 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// padClaim returns claims grown by a filler claim to about n bytes of JSON.
func padClaim(c gojwt.MapClaims, n int) gojwt.MapClaims {
	c["pad"] = strings.Repeat("x", n)
	return c
}
