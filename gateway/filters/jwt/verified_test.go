package jwt_test

import (
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/gateway/filters/jwt"
)

// TestVerifiedCache: an accepted token is kept and its next uses pass from the
// cache with the same identity; forged tokens never enter it.
func TestVerifiedCache(t *testing.T) {
	srv := newJWKS(t)
	f := mustBuild(t, issuerConfig(srv.URL, ""), buildOpts{})
	tok := es256(t, claims())
	first := serve(t, f, bearer(tok), nil)
	if first.status != 200 || jwt.CachedTokens(f) != 1 {
		t.Fatalf("first use: %d %s, %d cached; want 200 and 1 cached", first.status, first.reason, jwt.CachedTokens(f))
	}
	second := serve(t, f, bearer(tok), nil)
	if second.status != 200 || second.verified == nil || second.verified.Subject != "user-42" {
		t.Fatalf("second use: %d %s identity %+v", second.status, second.reason, second.verified)
	}
	if got := second.upstream.Get("X-User"); got != "user-42" {
		t.Errorf("claim header from a cached token: %q, want user-42", got)
	}
	if jwt.CachedTokens(f) != 1 {
		t.Errorf("%d cached after a second use of one token, want 1", jwt.CachedTokens(f))
	}
	forged := mint(t, gojwt.SigningMethodRS256, keys().attacker, "rsa1", claims(), nil)
	for range 2 {
		if res := serve(t, f, bearer(forged), nil); res.status != 401 || res.reason != "jwt_bad_signature" {
			t.Errorf("forged token: %d %s, want 401 jwt_bad_signature", res.status, res.reason)
		}
	}
	// A token that differs in one signature character is another cache key.
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	flipped := tok[:len(tok)-len(sig)] + string(sig[0]^1) + sig[1:]
	if res := serve(t, f, bearer(flipped), nil); res.status != 401 {
		t.Errorf("token with a changed signature: %d %s, want 401", res.status, res.reason)
	}
	if jwt.CachedTokens(f) != 1 {
		t.Errorf("refused tokens entered the cache: %d cached, want 1", jwt.CachedTokens(f))
	}
}

// TestVerifiedCacheKeyRotation: when the issuer withdraws the key that verified a
// cached token, the token is refused at its next use.
func TestVerifiedCacheKeyRotation(t *testing.T) {
	srv := newJWKS(t)
	f := mustBuild(t, issuerConfig(srv.URL, ""), buildOpts{})
	tok := rs256(t, claims())
	if res := serve(t, f, bearer(tok), nil); res.status != 200 {
		t.Fatalf("before rotation: %d %s", res.status, res.reason)
	}
	srv.set(ecJWK("ec1", &keys().ec.PublicKey)) // rsa1 withdrawn
	jwt.Refresh(f, issuerName)
	if res := serve(t, f, bearer(tok), nil); res.status != 401 || res.reason != "jwt_unknown_kid" {
		t.Errorf("cached token after its key was withdrawn: %d %s, want 401 jwt_unknown_kid", res.status, res.reason)
	}
}

// TestVerifiedCacheExpiry: a cached token stops passing when it expires.
func TestVerifiedCacheExpiry(t *testing.T) {
	srv := newJWKS(t)
	f := mustBuild(t, issuerConfig(srv.URL, "leeway: 0s"), buildOpts{})
	c := claims()
	c["exp"] = time.Now().Add(2 * time.Second).Unix()
	tok := es256(t, c)
	if res := serve(t, f, bearer(tok), nil); res.status != 200 {
		t.Fatalf("fresh token: %d %s", res.status, res.reason)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := serve(t, f, bearer(tok), nil)
		if res.status == 401 {
			if res.reason != "jwt_expired" {
				t.Errorf("expired cached token: reason %s, want jwt_expired", res.reason)
			}
			if exp := time.Unix(c["exp"].(int64), 0); time.Now().Before(exp) {
				t.Errorf("refused at %v, before its exp %v", time.Now(), exp)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("an expired token kept passing from the cache")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVerifiedCacheOff: off on request, and always off with replay detection.
func TestVerifiedCacheOff(t *testing.T) {
	srv := newJWKS(t)
	for _, extra := range []string{"cacheVerified: false", "replayDetection: true"} {
		f := mustBuild(t, issuerConfig(srv.URL, extra), buildOpts{})
		if n := jwt.CachedTokens(f); n != -1 {
			t.Errorf("%s: cache on (%d entries)", extra, n)
		}
	}
	for extra, want := range map[string]string{
		"replayDetection: true\ncacheVerified: true": "cacheVerified: cannot be used with replayDetection",
		"cacheVerified: false\nmaxCachedTokens: 5":   "maxCachedTokens: only meaningful with cacheVerified: true",
		"maxCachedTokens: 1":                         "maxCachedTokens: 1 is outside 2 to 1000000",
	} {
		_, err := build(t, issuerConfig(srv.URL, extra), buildOpts{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to contain %q", extra, err, want)
		}
	}
}

// TestVerifiedCacheBounded: a flood of distinct valid tokens keeps at most
// maxCachedTokens entries.
func TestVerifiedCacheBounded(t *testing.T) {
	srv := newJWKS(t)
	f := mustBuild(t, issuerConfig(srv.URL, "maxCachedTokens: 8"), buildOpts{})
	for i := range 40 {
		if res := serve(t, f, bearer(es256(t, claims())), nil); res.status != 200 {
			t.Fatalf("token %d: %d %s", i, res.status, res.reason)
		}
		if n := jwt.CachedTokens(f); n > 8 {
			t.Fatalf("after %d tokens: %d cached, bound is 8", i+1, n)
		}
	}
}
