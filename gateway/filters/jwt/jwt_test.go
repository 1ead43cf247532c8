package jwt_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filters/jwt"
	"github.com/portcullis/portcullis/gateway/snapshot"
	"github.com/portcullis/portcullis/internal/testutil"
)

func TestAccepted(t *testing.T) {
	srv := newJWKS(t)
	k := keys()
	// A second issuer with its own keys and algorithms, in a local file.
	file := filepath.Join(t.TempDir(), "partner.json")
	os.WriteFile(file, jwksJSON(ecJWK("p384", &k.ec384.PublicKey), edJWK("ed1", k.ed.Public().(ed25519.PublicKey))), 0o600)
	f := mustBuild(t, issuerConfig(srv.URL, `  - issuer: partner
    audiences: [api.example.com]
    algorithms: [ES384, EdDSA]
    jwksFile: `+file+`
    claimsToHeaders: [{claim: sub, header: X-Partner}]`), buildOpts{})
	now := time.Now()
	tests := []struct {
		name    string
		token   func() string
		headers map[string]string // wanted at the upstream; "" means absent
	}{
		{"RS256", func() string { return rs256(t, claims()) }, map[string]string{"X-User": "user-42"}},
		{"ES256", func() string { return es256(t, claims()) }, map[string]string{"X-User": "user-42"}},
		{"aud as a string", func() string { c := claims(); c["aud"] = audience; return rs256(t, c) }, nil},
		{"aud with several values", func() string { c := claims(); c["aud"] = []string{"x", audience, "y"}; return rs256(t, c) }, nil},
		{"expired within leeway", func() string { c := claims(); c["exp"] = now.Add(-10 * time.Second).Unix(); return rs256(t, c) }, nil},
		{"nbf within leeway", func() string { c := claims(); c["nbf"] = now.Add(10 * time.Second).Unix(); return rs256(t, c) }, nil},
		{"iat within leeway", func() string { c := claims(); c["iat"] = now.Add(10 * time.Second).Unix(); return rs256(t, c) }, nil},
		{"no nbf, no iat", func() string { c := claims(); delete(c, "nbf"); delete(c, "iat"); return es256(t, c) }, nil},
		{"claims mapped", func() string {
			c := claims()
			c["roles"] = []string{"admin", "billing"}
			c["tenant"] = 7.0
			return rs256(t, c)
		}, map[string]string{"X-User": "user-42", "X-Roles": "admin, billing", "X-Tenant": "7"}},
		{"claim with CR LF is not mapped", func() string { c := claims(); c["sub"] = "a\r\nX-Admin: 1"; return rs256(t, c) }, map[string]string{"X-User": ""}},
		{"object claim is not mapped", func() string { c := claims(); c["roles"] = map[string]any{"a": 1}; return rs256(t, c) }, map[string]string{"X-Roles": ""}},
		{"no kid, one fitting key", func() string { return mint(t, gojwt.SigningMethodES256, k.ec, "", claims(), nil) }, nil},
		{"typ absent", func() string {
			return mint(t, gojwt.SigningMethodRS256, k.rsa, "rsa1", claims(), map[string]any{"typ": nil})
		}, nil},
		{"ES384 from the file issuer", func() string {
			c := claims()
			c["iss"] = "partner"
			return mint(t, gojwt.SigningMethodES384, k.ec384, "p384", c, nil)
		}, map[string]string{"X-Partner": "user-42", "X-User": ""}},
		{"EdDSA from the file issuer", func() string {
			c := claims()
			c["iss"] = "partner"
			return mint(t, gojwt.SigningMethodEdDSA, k.ed, "ed1", c, nil)
		}, map[string]string{"X-Partner": "user-42"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token()
			res := serve(t, f, bearer(tok), func(r *http.Request) {
				// Forged identity headers must never reach the upstream.
				r.Header.Set("X-User", "forged")
				r.Header.Set("X-Partner", "forged")
				r.Header.Set("x-roles", "forged")
				r.Header["X_user"] = []string{"forged"}
			})
			if res.status != 200 || res.upstream == nil {
				t.Fatalf("got %d %s (%s), want the request passed on", res.status, res.reason, res.challenge)
			}
			if got := res.upstream.Get("Authorization"); got != bearer(tok) {
				t.Errorf("Authorization at the upstream = %q, want it unchanged", got)
			}
			for h, want := range tt.headers {
				if got := res.upstream.Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
			for _, h := range []string{"X-User", "X-Partner", "X-Roles", "X_user"} {
				if res.upstream.Get(h) == "forged" || slices.Contains(res.upstream[h], "forged") {
					t.Errorf("the client's own %s reached the upstream", h)
				}
			}
			if res.verified == nil || res.verified.Subject == "" || res.verified.Claims["sub"] == nil {
				t.Errorf("IdentityFrom = %+v, want the verified claims", res.verified)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	srv := newJWKS(t)
	k := keys()
	attacker := newJWKS(t, rsaJWK("attacker", &k.attacker.PublicKey), rsaJWK("rsa1", &k.attacker.PublicKey))
	f := mustBuild(t, issuerConfig(srv.URL, `  - issuer: https://other.example.com
    audiences: [api.example.com]
    algorithms: [PS256, ES256]
    jwksFile: `+writeFile(t, jwksJSON(ecJWK("other-ec", &k.ec384.PublicKey), rsaJWK("other-rsa", &k.rsa2.PublicKey)))), buildOpts{})
	now := time.Now()
	valid := rs256(t, claims())
	parts := strings.Split(valid, ".")
	// The RSA public key as an HMAC secret, in the forms an attacker would try.
	der, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwkJSON, _ := json.Marshal(rsaJWK("rsa1", &k.rsa.PublicKey))
	withClaims := func(mod func(gojwt.MapClaims)) gojwt.MapClaims { c := claims(); mod(c); return c }

	tests := []struct {
		name   string
		authz  string
		reason string
	}{
		// Forgeries.
		{"alg none", bearer(segment(map[string]any{"alg": "none", "typ": "JWT", "kid": "rsa1"}) + "." + parts[1] + "."), "jwt_alg_not_allowed"},
		{"alg None", bearer(segment(map[string]any{"alg": "None", "kid": "rsa1"}) + "." + parts[1] + "."), "jwt_alg_not_allowed"},
		{"alg none with the original signature", bearer(segment(map[string]any{"alg": "none", "kid": "rsa1"}) + "." + parts[1] + "." + parts[2]), "jwt_alg_not_allowed"},
		{"HS256 with the PEM public key as secret", bearer(mint(t, gojwt.SigningMethodHS256, pemKey, "rsa1", claims(), nil)), "jwt_alg_not_allowed"},
		{"HS256 with the DER public key as secret", bearer(mint(t, gojwt.SigningMethodHS256, der, "rsa1", claims(), nil)), "jwt_alg_not_allowed"},
		{"HS256 with the JWK as secret", bearer(mint(t, gojwt.SigningMethodHS256, jwkJSON, "rsa1", claims(), nil)), "jwt_alg_not_allowed"},
		{"alg missing", bearer(segment(map[string]any{"kid": "rsa1"}) + "." + parts[1] + "." + parts[2]), "jwt_alg_not_allowed"},
		{"alg unknown", bearer(segment(map[string]any{"alg": "RS999", "kid": "rsa1"}) + "." + parts[1] + "." + parts[2]), "jwt_alg_not_allowed"},
		{"alg not allowed for the issuer", bearer(mint(t, gojwt.SigningMethodPS256, k.rsa, "rsa1", claims(), nil)), "jwt_alg_not_allowed"},
		{"EC token claiming RS256", bearer(realg(mint(t, gojwt.SigningMethodES256, k.ec, "ec1", claims(), nil), "RS256")), "jwt_key_mismatch"},
		{"RSA-signed RS256 naming the EC key", bearer(mint(t, gojwt.SigningMethodRS256, k.rsa, "ec1", claims(), nil)), "jwt_key_mismatch"},
		{"ES384 signature under ES256", bearer(realg(mint(t, gojwt.SigningMethodES384, k.ec384, "ec1", claims(), nil), "ES256")), "jwt_bad_signature"},
		{"unknown kid", bearer(mint(t, gojwt.SigningMethodRS256, k.attacker, "nope", claims(), nil)), "jwt_unknown_kid"},
		{"kid of another issuer", bearer(mint(t, gojwt.SigningMethodRS256, k.rsa2, "other-rsa", claims(), nil)), "jwt_unknown_kid"},
		{"kid not a string", bearer(mint(t, gojwt.SigningMethodRS256, k.rsa, "", claims(), map[string]any{"kid": 1})), "jwt_malformed"},
		{"signed by the attacker with our kid", bearer(mint(t, gojwt.SigningMethodRS256, k.attacker, "rsa1", claims(), nil)), "jwt_bad_signature"},
		{"payload changed after signing", bearer(parts[0] + "." + segment(withClaims(func(c gojwt.MapClaims) { c["sub"] = "admin" })) + "." + parts[2]), "jwt_bad_signature"},
		{"signature stripped", bearer(parts[0] + "." + parts[1] + "."), "jwt_bad_signature"},
		{"jku to the attacker", bearer(mint(t, gojwt.SigningMethodRS256, k.attacker, "attacker", claims(), map[string]any{"jku": attacker.URL})), "jwt_unknown_kid"},
		{"jku to the attacker with our kid", bearer(mint(t, gojwt.SigningMethodRS256, k.attacker, "rsa1", claims(), map[string]any{"jku": attacker.URL})), "jwt_bad_signature"},
		{"x5u to the attacker", bearer(mint(t, gojwt.SigningMethodRS256, k.attacker, "attacker", claims(), map[string]any{"x5u": attacker.URL})), "jwt_unknown_kid"},
		{"embedded jwk", bearer(mint(t, gojwt.SigningMethodRS256, k.attacker, "", claims(), map[string]any{"jwk": rsaJWK("", &k.attacker.PublicKey)})), "jwt_bad_signature"},
		{"embedded jwk with its kid", bearer(mint(t, gojwt.SigningMethodRS256, k.attacker, "attacker", claims(), map[string]any{"jwk": rsaJWK("attacker", &k.attacker.PublicKey)})), "jwt_unknown_kid"},
		{"unknown crit", bearer(mint(t, gojwt.SigningMethodRS256, k.rsa, "rsa1", claims(), map[string]any{"crit": []string{"http://example.com/ext"}, "http://example.com/ext": true})), "jwt_crit_unsupported"},
		{"crit b64", bearer(mint(t, gojwt.SigningMethodRS256, k.rsa, "rsa1", claims(), map[string]any{"crit": []string{"b64"}, "b64": false})), "jwt_crit_unsupported"},
		{"crit empty", bearer(mint(t, gojwt.SigningMethodRS256, k.rsa, "rsa1", claims(), map[string]any{"crit": []string{}})), "jwt_crit_unsupported"},

		// Claims.
		{"expired", bearer(rs256(t, withClaims(func(c gojwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }))), "jwt_expired"},
		{"expired beyond leeway", bearer(rs256(t, withClaims(func(c gojwt.MapClaims) { c["exp"] = now.Add(-45 * time.Second).Unix() }))), "jwt_expired"},
		{"no exp", bearer(rs256(t, withClaims(func(c gojwt.MapClaims) { delete(c, "exp") }))), "jwt_missing_exp"},
		{"exp a string", bearer(rs256(t, withClaims(func(c gojwt.MapClaims) { c["exp"] = "tomorrow" }))), "jwt_bad_claims"},
		{"not yet valid", bearer(rs256(t, withClaims(func(c gojwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }))), "jwt_not_yet_valid"},
		{"iat in the future", bearer(es256(t, withClaims(func(c gojwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }))), "jwt_issued_in_future"},
		{"wrong issuer", bearer(rs256(t, withClaims(func(c gojwt.MapClaims) { c["iss"] = "https://evil.example.com" }))), "jwt_wrong_issuer"},
		{"issuer with trailing slash", bearer(rs256(t, withClaims(func(c gojwt.MapClaims) { c["iss"] = issuerName + "/" }))), "jwt_wrong_issuer"},
		{"no issuer", bearer(rs256(t, withClaims(func(c gojwt.MapClaims) { delete(c, "iss") }))), "jwt_wrong_issuer"},
		{"issuer not a string", bearer(rs256(t, withClaims(func(c gojwt.MapClaims) { c["iss"] = []string{issuerName} }))), "jwt_bad_claims"},
		{"wrong audience", bearer(rs256(t, withClaims(func(c gojwt.MapClaims) { c["aud"] = "billing.example.com" }))), "jwt_wrong_audience"},
		{"no audience", bearer(es256(t, withClaims(func(c gojwt.MapClaims) { delete(c, "aud") }))), "jwt_wrong_audience"},
		{"audience not strings", bearer(es256(t, withClaims(func(c gojwt.MapClaims) { c["aud"] = []any{1} }))), "jwt_bad_claims"},

		// Size and shape.
		{"oversized", bearer(rs256(t, padClaim(claims(), 9000))), "jwt_too_large"},
		{"oversized header", "Bearer " + strings.Repeat("a", 20000), "jwt_too_large"},
		{"one part", bearer("abc"), "jwt_malformed"},
		{"two parts", bearer(parts[0] + "." + parts[1]), "jwt_malformed"},
		{"four parts", bearer(valid + ".x"), "jwt_malformed"},
		{"bad base64 header", bearer("!!!." + parts[1] + "." + parts[2]), "jwt_malformed"},
		{"bad base64 signature", bearer(parts[0] + "." + parts[1] + ".***"), "jwt_malformed"},
		{"padded base64", bearer(parts[0] + "=." + parts[1] + "." + parts[2]), "jwt_malformed"},
		{"standard base64", bearer(strings.NewReplacer("-", "+", "_", "/").Replace(valid)), "jwt_malformed"},
		{"header not JSON", bearer(b64([]byte("{alg:RS256")) + "." + parts[1] + "." + parts[2]), "jwt_malformed"},
		{"payload not JSON", bearer(parts[0] + "." + b64([]byte(`{"sub":`)) + "." + parts[2]), "jwt_malformed"},
		{"payload an array", bearer(parts[0] + "." + b64([]byte(`[1,2]`)) + "." + parts[2]), "jwt_malformed"},
		{"header an array", bearer(b64([]byte(`["RS256"]`)) + "." + parts[1] + "." + parts[2]), "jwt_malformed"},
		{"empty token", "Bearer ", "jwt_malformed"},
		{"scheme only", "Bearer", "jwt_malformed"},
		{"no token", "", "jwt_missing_token"},
		{"another scheme", "Basic dXNlcjpwYXNz", "jwt_missing_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := serve(t, f, tt.authz, nil)
			if res.status != http.StatusUnauthorized || res.upstream != nil {
				t.Fatalf("got %d %s, want 401 and nothing passed on", res.status, res.reason)
			}
			if res.reason != tt.reason {
				t.Errorf("reason %q, want %q", res.reason, tt.reason)
			}
			wantChallenge := `Bearer realm="portcullis", error="invalid_token", error_description="`
			if tt.reason == "jwt_missing_token" {
				wantChallenge = `Bearer realm="portcullis"`
				if res.challenge != wantChallenge {
					t.Errorf("WWW-Authenticate %q, want %q (RFC 6750 §3.1: no error code without a token)", res.challenge, wantChallenge)
				}
			} else if !strings.HasPrefix(res.challenge, wantChallenge) {
				t.Errorf("WWW-Authenticate %q, want prefix %q", res.challenge, wantChallenge)
			}
		})
	}
	if n := attacker.hits.Load(); n != 0 {
		t.Errorf("the attacker's key server received %d requests; jku/x5u must never be fetched", n)
	}
}

// realg rewrites a token's alg without re-signing it.
func realg(tok, alg string) string {
	parts := strings.Split(tok, ".")
	var h map[string]any
	raw, _ := b64dec(parts[0])
	json.Unmarshal(raw, &h)
	h["alg"] = alg
	return segment(h) + "." + parts[1] + "." + parts[2]
}

func writeFile(t testing.TB, b []byte) string {
	p := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMultipleAuthorizationHeaders(t *testing.T) {
	f := mustBuild(t, issuerConfig(newJWKS(t).URL, ""), buildOpts{})
	tok := rs256(t, claims())
	res := serve(t, f, "", func(r *http.Request) {
		r.Header.Add("Authorization", bearer(tok))
		r.Header.Add("Authorization", bearer(tok))
	})
	if res.status != 401 || res.reason != "jwt_malformed" {
		t.Errorf("got %d %s, want 401 jwt_malformed", res.status, res.reason)
	}
	// The scheme is case-insensitive (RFC 9110 §11.1).
	if res := serve(t, f, "bEaReR "+tok, nil); res.status != 200 {
		t.Errorf("lower-case scheme: got %d %s, want 200", res.status, res.reason)
	}
}

func TestOptional(t *testing.T) {
	f := mustBuild(t, issuerConfig(newJWKS(t).URL, "optional: true"), buildOpts{})
	forge := func(r *http.Request) {
		r.Header.Set("X-User", "admin")
		r.Header.Set("X-Tenant", "1")
		r.Header["X_tenant"] = []string{"1"}
		r.Header.Set("X-Other", "kept")
	}

	res := serve(t, f, "", forge)
	if res.status != 200 || res.upstream == nil {
		t.Fatalf("no token on an optional route: got %d %s, want it passed on", res.status, res.reason)
	}
	if res.upstream.Get("X-User") != "" || res.upstream.Get("X-Tenant") != "" || res.upstream["X_tenant"] != nil {
		t.Errorf("forged identity headers reached the upstream: %v", res.upstream)
	}
	if res.upstream.Get("X-Other") != "kept" {
		t.Errorf("an unrelated header was removed: %v", res.upstream)
	}
	if res.verified != nil {
		t.Errorf("IdentityFrom = %+v for an unauthenticated request", res.verified)
	}
	if res := serve(t, f, "", nil); res.status != 200 {
		t.Errorf("no token, no forged headers: got %d", res.status)
	}
	if res := serve(t, f, "Basic "+strings.Repeat("a", 20000), func(r *http.Request) { r.Header["x-user"] = []string{"admin"} }); res.status != 200 || res.upstream["x-user"] != nil {
		t.Errorf("another scheme, large, with a non-canonical forged header: got %d %v", res.status, res.upstream)
	}
	// A token that is present must be valid.
	c := claims()
	c["exp"] = time.Now().Add(-time.Hour).Unix()
	if res := serve(t, f, bearer(rs256(t, c)), forge); res.status != 401 || res.reason != "jwt_expired" {
		t.Errorf("expired token on an optional route: got %d %s, want 401 jwt_expired", res.status, res.reason)
	}
	if res := serve(t, f, "Bearer ", nil); res.status != 401 {
		t.Errorf("empty bearer token on an optional route: got %d, want 401", res.status)
	}
	if res := serve(t, f, bearer(es256(t, claims())), forge); res.status != 200 || res.upstream.Get("X-User") != "user-42" {
		t.Errorf("valid token on an optional route: got %d, X-User %q", res.status, res.upstream.Get("X-User"))
	}
}

func TestReplay(t *testing.T) {
	srv := newJWKS(t)
	f := mustBuild(t, issuerConfig(srv.URL, "replayDetection: true\nmaxJTIs: 3\nleeway: 0s"), buildOpts{})
	tok := rs256(t, claims())
	if res := serve(t, f, bearer(tok), nil); res.status != 200 {
		t.Fatalf("first use: got %d %s", res.status, res.reason)
	}
	if res := serve(t, f, bearer(tok), nil); res.status != 401 || res.reason != "jwt_replayed" {
		t.Errorf("second use: got %d %s, want 401 jwt_replayed", res.status, res.reason)
	}
	c := claims()
	delete(c, "jti")
	if res := serve(t, f, bearer(rs256(t, c)), nil); res.reason != "jwt_missing_jti" {
		t.Errorf("no jti: got %d %s, want 401 jwt_missing_jti", res.status, res.reason)
	}
	// The same jti from another issuer is another token; from the same issuer with
	// another signature it is the same one.
	c = claims()
	c["jti"] = "fixed"
	if res := serve(t, f, bearer(es256(t, c)), nil); res.status != 200 {
		t.Errorf("jti fixed, ES256: got %d %s", res.status, res.reason)
	}
	if res := serve(t, f, bearer(rs256(t, c)), nil); res.reason != "jwt_replayed" {
		t.Errorf("jti fixed, re-signed RS256: got %d %s, want jwt_replayed", res.status, res.reason)
	}
	// A forged token must not take a place in the cache.
	before := jwt.ReplayEntries(f)
	serve(t, f, bearer(mint(t, gojwt.SigningMethodRS256, keys().attacker, "rsa1", claims(), nil)), nil)
	if jwt.ReplayEntries(f) != before {
		t.Error("a token with a bad signature was recorded in the replay cache")
	}

	// Bounded: with maxJTIs live entries, new tokens are refused until one expires.
	short := claims()
	// exp is whole seconds: now+3s truncated still leaves the entry 2s or more,
	// so that a loaded machine cannot see it expire before the next line.
	short["exp"] = time.Now().Add(3 * time.Second).Unix()
	if res := serve(t, f, bearer(rs256(t, short)), nil); res.status != 200 {
		t.Fatalf("third entry: got %d %s", res.status, res.reason)
	}
	next := rs256(t, claims())
	if res := serve(t, f, bearer(next), nil); res.status != 401 || res.reason != "jwt_replay_cache_full" {
		t.Errorf("cache full: got %d %s, want 401 jwt_replay_cache_full", res.status, res.reason)
	}
	waitFor(t, "the short token's entry to expire", func() bool {
		return serve(t, f, bearer(next), nil).status == 200
	})
	if res := serve(t, f, bearer(next), nil); res.reason != "jwt_replayed" {
		t.Errorf("after eviction of an expired entry: got %d %s, want jwt_replayed", res.status, res.reason)
	}
}

// TestReplayConcurrent: of many simultaneous uses of one token, exactly one passes.
func TestReplayConcurrent(t *testing.T) {
	f := mustBuild(t, issuerConfig(newJWKS(t).URL, "replayDetection: true"), buildOpts{})
	serve(t, f, bearer(rs256(t, claims())), nil) // first fetch done
	tok := es256(t, claims())
	var ok, replayed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			switch res := serve(t, f, bearer(tok), nil); res.reason {
			case "":
				ok.Add(1)
			case "jwt_replayed":
				replayed.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || replayed.Load() != 15 {
		t.Errorf("%d accepted, %d refused as replays; want 1 and 15", ok.Load(), replayed.Load())
	}
}

// TestSecurityLog: every refusal writes one security event without the token.
func TestSecurityLog(t *testing.T) {
	var buf testutil.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	f := mustBuild(t, issuerConfig(newJWKS(t).URL, "realm: orders"), buildOpts{log: log})
	c := claims()
	c["aud"] = "elsewhere"
	tok := rs256(t, c)
	res := serve(t, f, bearer(tok), nil)
	if res.challenge != `Bearer realm="orders", error="invalid_token", error_description="the token is not meant for this audience"` {
		t.Errorf("WWW-Authenticate %q", res.challenge)
	}
	serve(t, f, "", nil)
	var events []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["event"] == "security" {
			events = append(events, m)
		}
	}
	if len(events) != 2 {
		t.Fatalf("%d security events, want 2:\n%s", len(events), buf.String())
	}
	detail, _ := events[0]["detail"].(string)
	if e := events[0]; e["level"] != "WARN" || e["reason"] != "jwt_wrong_audience" || e["kind"] != "auth_failure" ||
		!strings.Contains(detail, "kid=rsa1") || !strings.Contains(detail, "issuer="+issuerName) {
		t.Errorf("event %v", e)
	}
	if events[1]["reason"] != "jwt_missing_token" {
		t.Errorf("event %v", events[1])
	}
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	if strings.Contains(buf.String(), sig) || strings.Contains(buf.String(), tok[:40]) {
		t.Error("the log contains the token")
	}
}

// TestThroughTheCore runs the filter in a compiled snapshot: the core's error answer
// keeps the WWW-Authenticate header the filter set, for plain HTTP and gRPC, and
// closing the snapshot stops the filter's refresher.
func TestThroughTheCore(t *testing.T) {
	srv := newJWKS(t)
	var cfg strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(issuerConfig(srv.URL, "")), "\n") {
		cfg.WriteString("            " + l + "\n")
	}
	doc := `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata:
  name: public
spec:
  address: 127.0.0.1:8080
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata:
  name: r
spec:
  listeners: [public]
  rules:
    - directResponse:
        status: 200
        body: ok
      filters:
        - type: jwt
          config:
` + cfg.String()
	set, err := config.Parse("core.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s, err := snapshot.Compile(set, "v1", nil, snapshot.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	do := func(authz, contentType string) *http.Response {
		r := httptest.NewRequest("POST", "http://api.example.com/x", nil)
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		s.Serve("default/public", rec, r)
		return rec.Result()
	}
	if res := do(bearer(rs256(t, claims())), ""); res.StatusCode != 200 {
		t.Errorf("valid token: %d", res.StatusCode)
	}
	c := claims()
	c["exp"] = time.Now().Add(-time.Hour).Unix()
	res := do(bearer(rs256(t, c)), "")
	body := new(bytes.Buffer)
	body.ReadFrom(res.Body)
	if res.StatusCode != 401 || !strings.Contains(body.String(), "jwt_expired") ||
		res.Header.Get("Www-Authenticate") != `Bearer realm="portcullis", error="invalid_token", error_description="the token expired"` {
		t.Errorf("expired token through the core: %d %v %q", res.StatusCode, res.Header, body)
	}
	res = do("", "application/grpc")
	if res.StatusCode != 200 || res.Header.Get("Grpc-Status") != "16" || res.Header.Get("Www-Authenticate") != `Bearer realm="portcullis"` {
		t.Errorf("gRPC without token through the core: %d %v", res.StatusCode, res.Header)
	}
}

// b64dec decodes a JWS segment.
func b64dec(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
