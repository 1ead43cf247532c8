package ratelimit_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/gateway/config"
	_ "github.com/portcullis/portcullis/gateway/filters/jwt"
	"github.com/portcullis/portcullis/gateway/snapshot"
)

// identityDoc is an API route: jwt (optional, so that anonymous requests reach the
// rate limit) then ratelimit per subject, with plans from the "plan" claim.
func identityDoc(backend, jwksFile string) string {
	return fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: public}
spec:
  address: 127.0.0.1:18081
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: backend}
spec:
  endpoints: [{address: %s}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: api}
spec:
  listeners: [public]
  rules:
    - filters:
        - type: jwt
          config:
            optional: true
            issuers:
              - issuer: https://login.example.com
                audiences: [api]
                algorithms: [EdDSA]
                jwksFile: %s
        - type: ratelimit
          config:
            key: {subject: {}}
            missingKey: refuse
            requestsPerSecond: 0.01
            burst: 1
            planClaim: plan
            plans:
              pro: {requestsPerSecond: 0.01, burst: 3}
      forward: {backends: [{cluster: backend}]}
`, backend, jwksFile)
}

// TestIdentityFromJWTThroughTheCore: the identity the real jwt filter attaches is
// what the limit keys and plans use, compiled and served by the snapshot.
func TestIdentityFromJWTThroughTheCore(t *testing.T) {
	var upstream atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream.Add(1)
		io.WriteString(w, "ok")
	}))
	defer backend.Close()

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	set := fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","use":"sig","x":%q}]}`, base64.RawURLEncoding.EncodeToString(pub))
	if err := os.WriteFile(jwks, []byte(set), 0o600); err != nil {
		t.Fatal(err)
	}
	token := func(sub, plan string) string {
		claims := gojwt.MapClaims{"iss": "https://login.example.com", "aud": "api", "sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
		if plan != "" {
			claims["plan"] = plan
		}
		tok := gojwt.NewWithClaims(gojwt.SigningMethodEdDSA, claims)
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	cs, err := config.Parse("api.yaml", []byte(identityDoc(backend.Listener.Addr().String(), jwks)))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Compile(cs, "v1", nil, snapshot.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	snap.Start(nil)
	defer snap.Close()
	serve := func(bearer, peer string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "http://api.example.com/items", nil)
		r.RemoteAddr = peer
		if bearer != "" {
			r.Header.Set("Authorization", "Bearer "+bearer)
		}
		rec := httptest.NewRecorder()
		snap.Acquire()
		defer snap.Release()
		snap.Serve("default/public", rec, r)
		return rec
	}

	alice, bob := token("alice", "pro"), token("bob", "")
	steps := []struct {
		name   string
		bearer string
		peer   string
		status int
		limit  string
	}{
		{"pro caller, 1", alice, "192.0.2.1:1000", 200, "3"},
		{"pro caller, 2, from another address", alice, "192.0.2.2:1000", 200, "3"},
		{"pro caller, 3, a fresh token", token("alice", "pro"), "192.0.2.3:1000", 200, "3"},
		{"pro caller, over its plan", alice, "192.0.2.1:1000", 429, "3"},
		{"another caller, same address", bob, "192.0.2.1:1000", 200, "1"},
		{"that caller, over the top-level rate", bob, "192.0.2.1:1000", 429, "1"},
		{"no token: refused by the limit, as unauthenticated", "", "192.0.2.9:1000", 401, ""},
	}
	for i, s := range steps {
		before := upstream.Load()
		rec := serve(s.bearer, s.peer)
		if rec.Code != s.status || rec.Header().Get("RateLimit-Limit") != s.limit {
			t.Fatalf("step %d (%s): %d limit %q, want %d %q; body %q", i+1, s.name, rec.Code, rec.Header().Get("RateLimit-Limit"), s.status, s.limit, rec.Body)
		}
		if reached := upstream.Load() > before; reached != (s.status == 200) {
			t.Errorf("step %d (%s): upstream reached %v", i+1, s.name, reached)
		}
		if s.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("step %d (%s): 401 without a challenge", i+1, s.name)
		}
	}
}
