package tokenmint_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/edgetoken"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/tokenmint"
)

const idp = "https://id.example.com"

// minterConfig is a tokenmint config signing with the key file at path, plus
// extra top-level lines.
func minterConfig(path, extra string) string {
	return fmt.Sprintf(`keyFile: %s
issuer: %s
audience: %s
scopes: [orders.read, orders.write]
copyClaims: [email, org.id]
stripCookies: ["__Host-session*", csrf]
%s`, path, edgeIssuer, audience, extra)
}

// ann is an authenticated caller as the jwt filter leaves her.
func ann(scope any) *filter.Identity {
	return &filter.Identity{Source: "jwt", Issuer: idp, Subject: "ann", Claims: map[string]any{
		"iss": idp, "sub": "ann", "scope": scope, "email": "ann@example.com",
		"org": map[string]any{"id": "acme"},
	}}
}

// request is a GET carrying every credential a client can send.
func request() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://api.example.com/v1/orders", nil)
	r.Header.Set("Authorization", "Bearer user.token.secret")
	r.Header.Set("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0")
	r.Header.Add("Cookie", "__Host-session.0=aaa; theme=dark; csrf=zzz")
	r.Header.Add("Cookie", "__Host-session.1=bbb")
	return r
}

func jwksOf(t testing.TB, path string) []byte {
	t.Helper()
	s, err := edgetoken.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return s.JWKS()
}

func TestMintsForTheCaller(t *testing.T) {
	path := keyFile(t, keys().edge1, keys().edge2)
	f := mustBuild(t, "tokenmint", minterConfig(path, "ttl: 90s"), nil)
	res := serve(t, f, request(), ann("openid orders.read profile"))
	if res.status != http.StatusOK || res.upstream == nil {
		t.Fatalf("got %d %s", res.status, res.reason)
	}
	tok := bearerOf(t, res.upstream)
	c, kid, err := verify(tok, jwksOf(t, path), audience)
	if err != nil {
		t.Fatalf("the upstream cannot verify the minted token: %v", err)
	}
	if kid != thumbprint(keys().edge1) {
		t.Errorf("signed by kid %s, want the first key's %s", kid, thumbprint(keys().edge1))
	}
	iat, _ := c.GetIssuedAt()
	exp, _ := c.GetExpirationTime()
	if d := exp.Sub(iat.Time); d != 90*time.Second || time.Since(iat.Time) > 5*time.Second {
		t.Errorf("iat %v exp %v: want exp = iat + 90s, iat now", iat, exp)
	}
	for claim, want := range map[string]any{"sub": "ann", "aud": audience, "iss": edgeIssuer,
		"scope": "orders.read", "email": "ann@example.com", "org.id": "acme"} {
		if c[claim] != want {
			t.Errorf("claim %s = %v, want %v", claim, c[claim], want)
		}
	}
	if got := res.upstream.Values("Cookie"); !slices.Equal(got, []string{"theme=dark"}) {
		t.Errorf("the upstream got cookies %q, want only theme=dark", got)
	}
	if v := res.upstream.Get("Proxy-Authorization"); v != "" {
		t.Errorf("the upstream got Proxy-Authorization %q", v)
	}
	for k, vs := range res.upstream {
		for _, v := range vs {
			if strings.Contains(v, "user.token.secret") || strings.Contains(v, "aaa") || strings.Contains(v, "zzz") {
				t.Errorf("the caller's credential reached the upstream in %s: %q", k, v)
			}
		}
	}
}

func TestScopesNarrowed(t *testing.T) {
	path := keyFile(t, keys().edge1)
	jwks := jwksOf(t, path)
	open := mustBuild(t, "tokenmint", minterConfig(path, ""), nil)
	ev := &events{}
	strict := mustBuild(t, "tokenmint", minterConfig(path, "requireScopes: true\nrealm: api.example.com"), ev)
	for _, tt := range []struct {
		name  string
		scope any
		want  string // the minted scope claim; "" for none
	}{
		{"one of two", "openid orders.read profile", "orders.read"},
		{"both, in the route's order", []any{"orders.write", "openid", "orders.read"}, "orders.read orders.write"},
		{"a near miss", "orders.reader", ""},
		{"none", "profile", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := serve(t, open, request(), ann(tt.scope))
			c, _, err := verify(bearerOf(t, res.upstream), jwks, audience)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := c["scope"].(string); got != tt.want || (tt.want == "") == (c["scope"] != nil) {
				t.Errorf("scope claim %v, want %q", c["scope"], tt.want)
			}
			res = serve(t, strict, request(), ann(tt.scope))
			got := ev.take()
			if tt.want != "" {
				if res.upstream == nil || len(got) != 0 {
					t.Errorf("requireScopes refused a caller with a route scope: %+v", res)
				}
				return
			}
			const challenge = `Bearer realm="api.example.com", error="insufficient_scope", ` +
				`error_description="the token lacks every scope this route accepts", scope="orders.read orders.write"`
			if res.upstream != nil || res.status != 403 || res.reason != tokenmint.ReasonInsufficientScope || res.challenge != challenge {
				t.Errorf("requireScopes: %+v", res)
			}
			if len(got) != 1 || got[0].kind != "tokenmint_refused" || !strings.Contains(got[0].detail, tokenmint.ReasonInsufficientScope+" route=default/r#0") ||
				!strings.Contains(got[0].detail, "sub=ann") {
				t.Errorf("events %+v", got)
			}
		})
	}
}

func TestAnonymous(t *testing.T) {
	path := keyFile(t, keys().edge1)
	ev := &events{}
	f := mustBuild(t, "tokenmint", minterConfig(path, ""), ev)
	res := serve(t, f, request(), nil)
	if res.upstream != nil || res.status != 401 || res.reason != tokenmint.ReasonUnauthenticated || res.challenge != `Bearer realm="portcullis"` {
		t.Errorf("anonymous: %+v", res)
	}
	if got := ev.take(); len(got) != 1 || !strings.Contains(got[0].detail, tokenmint.ReasonUnauthenticated) {
		t.Errorf("events %+v", got)
	}

	f = mustBuild(t, "tokenmint", minterConfig(path, "allowAnonymous: true"), ev)
	res = serve(t, f, request(), nil)
	if res.upstream == nil {
		t.Fatalf("allowAnonymous: %+v", res)
	}
	if v := res.upstream.Values("Authorization"); v != nil {
		t.Errorf("an anonymous request reached the upstream with Authorization %q", v)
	}
	if got := res.upstream.Values("Cookie"); !slices.Equal(got, []string{"theme=dark"}) {
		t.Errorf("cookies %q, want only theme=dark", got)
	}
	if got := ev.take(); len(got) != 0 {
		t.Errorf("events %+v", got)
	}
}

func TestNoSubject(t *testing.T) {
	f := mustBuild(t, "tokenmint", minterConfig(keyFile(t, keys().edge1), ""), nil)
	id := ann("orders.read")
	id.Subject = ""
	if res := serve(t, f, request(), id); res.upstream != nil || res.status != 403 || res.reason != tokenmint.ReasonNoSubject {
		t.Errorf("no subject: %+v", res)
	}
}

// TestOtherHeader: a custom header carries the bare token; the Authorization
// header and client-sent copies of the custom one, under either spelling, go.
func TestOtherHeader(t *testing.T) {
	path := keyFile(t, keys().edge1)
	f := mustBuild(t, "tokenmint", minterConfig(path, "header: x-edge-token"), nil)
	r := request()
	r.Header["X-Edge-Token"] = []string{"forged"}
	r.Header["X_edge_token"] = []string{"forged"}
	res := serve(t, f, r, ann("orders.write"))
	got := res.upstream.Values("X-Edge-Token")
	if len(got) != 1 {
		t.Fatalf("X-Edge-Token %q", got)
	}
	if _, _, err := verify(got[0], jwksOf(t, path), audience); err != nil {
		t.Errorf("X-Edge-Token does not verify: %v", err)
	}
	if res.upstream.Get("Authorization") != "" || res.upstream["X_edge_token"] != nil {
		t.Errorf("upstream headers %v", res.upstream)
	}
}

func TestStripEveryCookie(t *testing.T) {
	path := keyFile(t, keys().edge1)
	f := mustBuild(t, "tokenmint", minterConfig(path, ""), nil)
	f2 := mustBuild(t, "tokenmint", strings.Replace(minterConfig(path, ""),
		`stripCookies: ["__Host-session*", csrf]`, `stripCookies: ["*"]`, 1), nil)
	if res := serve(t, f, request(), ann("x")); len(res.upstream.Values("Cookie")) != 1 {
		t.Errorf("cookies %q", res.upstream.Values("Cookie"))
	}
	if res := serve(t, f2, request(), ann("x")); res.upstream.Values("Cookie") != nil {
		t.Errorf("stripCookies [*] left cookies %q", res.upstream.Values("Cookie"))
	}
	r := request()
	r.Header.Set("Cookie", "csrf=1; __Host-session=2")
	if res := serve(t, f, r, ann("x")); res.upstream.Values("Cookie") != nil {
		t.Errorf("a Cookie header of stripped cookies only was kept: %q", res.upstream.Values("Cookie"))
	}
	// A key written by another filter without canonicalising it.
	r = request()
	r.Header["cookie"] = []string{"csrf=1;theme=light"}
	if res := serve(t, f, r, ann("x")); !slices.Equal(res.upstream["cookie"], []string{"theme=light"}) {
		t.Errorf("non-canonical Cookie key: %q", res.upstream["cookie"])
	}
}

func TestCopyClaimShapes(t *testing.T) {
	path := keyFile(t, keys().edge1)
	f := mustBuild(t, "tokenmint", strings.Replace(minterConfig(path, ""), "copyClaims: [email, org.id]",
		"copyClaims: [level, roles, org, missing, realm_access.roles]", 1), nil)
	id := ann("orders.read")
	id.Claims["level"] = 3.0
	id.Claims["roles"] = []any{"a", "b"}
	id.Claims["realm_access"] = map[string]any{"roles": []any{"staff"}}
	res := serve(t, f, request(), id)
	c, _, err := verify(bearerOf(t, res.upstream), jwksOf(t, path), audience)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c["level"], c["roles"], c["org"], c["realm_access.roles"]); got != "3 [a b] map[id:acme] [staff]" {
		t.Errorf("copied claims: %s", got)
	}
	if _, has := c["missing"]; has {
		t.Error("a missing claim was copied")
	}
}

func TestCache(t *testing.T) {
	path := keyFile(t, keys().edge1)
	f := mustBuild(t, "tokenmint", minterConfig(path, "ttl: 60s"), nil)
	now := time.Unix(1_800_000_000, 0)
	tokenmint.SetClock(f, func() time.Time { return now })
	mint := func(id *filter.Identity) string {
		t.Helper()
		return bearerOf(t, serve(t, f, request(), id).upstream)
	}
	first := mint(ann("orders.read"))
	if again := mint(ann("orders.read profile")); again != first {
		t.Error("the same caller with the same narrowed scopes got a new token")
	}
	other := ann("orders.read")
	other.Issuer = "https://other-idp.example.com"
	differ := map[string]*filter.Identity{"issuer": other, "scopes": ann("orders.write")}
	moved := ann("orders.read")
	moved.Claims["org"] = map[string]any{"id": "globex"}
	differ["copied claim"] = moved
	bob := ann("orders.read")
	bob.Subject = "bob"
	differ["subject"] = bob
	for what, id := range differ {
		if mint(id) == first {
			t.Errorf("a caller differing in %s got the cached token", what)
		}
	}
	now = now.Add(29 * time.Second)
	if mint(ann("orders.read")) != first {
		t.Error("a token with more than half its life left was not reused")
	}
	now = now.Add(time.Second)
	if mint(ann("orders.read")) == first {
		t.Error("a token at half its life was handed out again")
	}

	uncached := mustBuild(t, "tokenmint", minterConfig(path, "cacheSize: 0"), nil)
	a := bearerOf(t, serve(t, uncached, request(), ann("orders.read")).upstream)
	b := bearerOf(t, serve(t, uncached, request(), ann("orders.read")).upstream)
	if a == b || tokenmint.CacheLen(uncached) != -1 {
		t.Error("cacheSize: 0 still caches")
	}
}

func TestCacheIsBounded(t *testing.T) {
	f := mustBuild(t, "tokenmint", minterConfig(keyFile(t, keys().edge1), "cacheSize: 4"), nil)
	for i := range 20 {
		id := ann("orders.read")
		id.Subject = fmt.Sprint("user-", i)
		if res := serve(t, f, request(), id); res.upstream == nil {
			t.Fatalf("request %d: %+v", i, res)
		}
		if n := tokenmint.CacheLen(f); n < 1 || n > 4 {
			t.Fatalf("after %d callers the cache holds %d tokens, want 1 to 4", i+1, n)
		}
	}
}
