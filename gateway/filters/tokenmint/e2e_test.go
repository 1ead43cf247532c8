package tokenmint_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/portcullis/portcullis/gateway/filter"
)

// This file runs the edge as a whole: a client sends a user token from an
// identity provider to an edge server on loopback, whose chain is the real jwt,
// authz and tokenmint filters; a real upstream server verifies what arrives with
// golang-jwt, against the JWK Set the jwks filter serves over HTTP; and the
// upstream's own sidecar check (a jwt filter fetching that set by URL) accepts
// it too.

const (
	idpIssuer   = "https://idp.test"
	apiAudience = "api.example.com"
	jwksPath    = "/.well-known/edge-jwks.json"
)

// seen is what the upstream reports about a request, as its response body.
type seen struct {
	Authorization []string       `json:"authorization"`
	Cookies       []string       `json:"cookies"`
	Token         string         `json:"token"`
	Kid           string         `json:"kid"`
	Claims        map[string]any `json:"claims"`
	VerifyError   string         `json:"verifyError"`
	Headers       http.Header    `json:"headers"`
	Sidecar       string         `json:"sidecar"` // the subject the sidecar's jwt filter verified
}

// chainServer serves a filter chain as the core does: a returned error becomes
// its status, with the headers the filter set. The chain can be swapped, as a
// reload swaps snapshots.
type chainServer struct {
	h atomic.Pointer[filter.Handler]
}

func (c *chainServer) set(h filter.Handler) { c.h.Store(&h) }

func (c *chainServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := (*c.h.Load()).ServeHTTP(w, r); err != nil {
		status, reason := filter.StatusOf(err)
		w.WriteHeader(status)
		io.WriteString(w, reason)
	}
}

type edge struct {
	keyPath              string
	api, jwks, up        chainServer
	server, upstream     *httptest.Server
	idp                  *httptest.Server
	jwtFilter, authzFltr filter.Filter
}

func newEdge(t *testing.T) *edge {
	k := keys()
	e := &edge{keyPath: keyFile(t, k.edge1, k.edge2)}

	// The identity provider publishes its key.
	e.idp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x, y := k.idp.X.FillBytes(make([]byte, 32)), k.idp.Y.FillBytes(make([]byte, 32))
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]string{
			"kty": "EC", "crv": "P-256", "kid": "idp-1", "use": "sig", "x": b64.EncodeToString(x), "y": b64.EncodeToString(y)}}})
	}))
	t.Cleanup(e.idp.Close)

	mux := http.NewServeMux()
	mux.Handle(jwksPath, &e.jwks)
	mux.Handle("/", &e.api)
	e.server = httptest.NewServer(mux)
	t.Cleanup(e.server.Close)
	e.upstream = httptest.NewServer(&e.up)
	t.Cleanup(e.upstream.Close)

	e.jwtFilter = mustBuild(t, "jwt", fmt.Sprintf(`optional: true
issuers:
  - issuer: %s
    audiences: [%s]
    algorithms: [ES256]
    jwksURI: %s`, idpIssuer, apiAudience, e.idp.URL), nil)
	t.Cleanup(func() { e.jwtFilter.(io.Closer).Close() })
	e.authzFltr = mustBuild(t, "authz", `realm: api.example.com
rules:
  - {name: health, methods: [GET], paths: [/healthz], public: true}
  - name: read
    methods: [GET]
    paths: [/v1/orders/*]
    require: {scopes: {anyOf: [orders.read, orders.write]}}
  - name: write
    methods: [POST]
    paths: [/v1/orders/*]
    require:
      issuers: [`+idpIssuer+`]
      scopes: {allOf: [orders.write]}
      claims: [{name: org.id, values: [acme]}]`, nil)
	e.load(t)

	// The upstream checks the token twice: through a jwt filter that fetches the
	// edge's set by URL, as a sidecar would, and then with golang-jwt against the
	// set it fetches itself.
	sidecarJWT := mustBuild(t, "jwt", fmt.Sprintf(`optional: true
issuers:
  - issuer: %s
    audiences: [%s]
    algorithms: [ES256]
    jwksURI: %s`, edgeIssuer, audience, e.server.URL+jwksPath), nil)
	t.Cleanup(func() { sidecarJWT.(io.Closer).Close() })
	e.up.set(filter.Chain([]filter.Filter{sidecarJWT}, filter.HandlerFunc(e.upstreamReport)))
	return e
}

// load builds the key-dependent filters, tokenmint and jwks, from the key file as
// it is now, and swaps them in: what a reload does.
func (e *edge) load(t *testing.T) {
	minter := mustBuild(t, "tokenmint", fmt.Sprintf(`keyFile: %s
issuer: %s
audience: %s
scopes: [orders.read, orders.write]
copyClaims: [email, org.id]
stripCookies: ["__Host-session*", csrf]
allowAnonymous: true
ttl: 60s`, e.keyPath, edgeIssuer, audience), nil)
	publisher := mustBuild(t, "jwks", "keyFile: "+e.keyPath+"\nmaxAge: 30s", nil)
	target, err := url.Parse(e.upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
	forward := filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		proxy.ServeHTTP(w, r)
		return nil
	})
	e.api.set(filter.Chain([]filter.Filter{e.jwtFilter, e.authzFltr, minter}, forward))
	e.jwks.set(filter.Chain([]filter.Filter{publisher}, filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return fmt.Errorf("the jwks filter passed a request on")
	})))
}

// upstreamReport is the upstream service: it verifies the bearer token with
// golang-jwt against the edge's published set and reports what it saw.
func (e *edge) upstreamReport(w http.ResponseWriter, r *http.Request) error {
	s := seen{Authorization: r.Header.Values("Authorization"), Cookies: r.Header.Values("Cookie"), Headers: r.Header}
	if id, ok := filter.IdentityFrom(r.Context()); ok {
		s.Sidecar = id.Subject
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		s.Token = tok
		jwks, err := e.fetchJWKS()
		if err == nil {
			s.Claims, s.Kid, err = verify(tok, jwks, audience)
		}
		if err != nil {
			s.VerifyError = err.Error()
		}
	}
	return json.NewEncoder(w).Encode(s)
}

func (e *edge) fetchJWKS() ([]byte, error) {
	resp, err := http.Get(e.server.URL + jwksPath)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/jwk-set+json" {
		return nil, fmt.Errorf("JWKS answer %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// userToken is an access token of the identity provider.
func userToken(t *testing.T, claims gojwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	c := gojwt.MapClaims{"iss": idpIssuer, "aud": apiAudience, "sub": "ann", "iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(), "jti": rand.Text(), "email": "ann@example.com"}
	for k, v := range claims {
		c[k] = v
	}
	tok := gojwt.NewWithClaims(gojwt.SigningMethodES256, c)
	tok.Header["kid"] = "idp-1"
	s, err := tok.SignedString(keys().idp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// do sends a request to the edge and returns the status, the challenge, and what
// the upstream saw (nil when the request did not reach it).
func (e *edge) do(t *testing.T, method, path, token string) (int, string, *seen) {
	t.Helper()
	req, err := http.NewRequest(method, e.server.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Cookie", "__Host-session.0=s3ss10n; theme=dark; __Host-session.1=m0re; csrf=c5rf")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	var s *seen
	if resp.StatusCode == 200 {
		s = &seen{}
		if err := json.Unmarshal(body, s); err != nil {
			t.Fatalf("upstream report %q: %v", body, err)
		}
	}
	return resp.StatusCode, resp.Header.Get("Www-Authenticate"), s
}

func TestEdgeEndToEnd(t *testing.T) {
	e := newEdge(t)
	kid1, kid2 := thumbprint(keys().edge1), thumbprint(keys().edge2)
	reader := userToken(t, gojwt.MapClaims{"scope": "openid orders.read profile", "org": map[string]any{"id": "acme"}})

	t.Run("the user token stays at the edge", func(t *testing.T) {
		status, _, s := e.do(t, "GET", "/v1/orders/42", reader)
		if status != 200 {
			t.Fatalf("status %d", status)
		}
		if s.VerifyError != "" {
			t.Fatalf("the upstream could not verify the minted token: %s", s.VerifyError)
		}
		if s.Token == reader || len(s.Authorization) != 1 {
			t.Errorf("the upstream got Authorization %q", s.Authorization)
		}
		raw, _ := json.Marshal(s.Headers)
		for _, secret := range []string{reader, "s3ss10n", "m0re", "c5rf"} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("a credential of the caller reached the upstream: %.20s...", secret)
			}
		}
		if !slices.Equal(s.Cookies, []string{"theme=dark"}) {
			t.Errorf("cookies upstream %q", s.Cookies)
		}
		c := s.Claims
		exp, iat := c["exp"].(float64), c["iat"].(float64)
		if c["iss"] != edgeIssuer || c["aud"] != audience || c["sub"] != "ann" || c["scope"] != "orders.read" ||
			c["email"] != "ann@example.com" || c["org.id"] != "acme" || exp-iat != 60 || exp < float64(time.Now().Unix()) {
			t.Errorf("claims %v", c)
		}
		if s.Kid != kid1 {
			t.Errorf("signed by %s, want the first key %s", s.Kid, kid1)
		}
		if s.Sidecar != "ann" {
			t.Errorf("the sidecar's jwt filter verified subject %q, want ann", s.Sidecar)
		}
	})

	t.Run("rules", func(t *testing.T) {
		writer := userToken(t, gojwt.MapClaims{"scope": "orders.write", "org": map[string]any{"id": "acme"}})
		outsider := userToken(t, gojwt.MapClaims{"scope": "orders.write", "org": map[string]any{"id": "initech"}})
		profile := userToken(t, gojwt.MapClaims{"scope": "profile"})
		for _, tt := range []struct {
			name, method, path, token string
			status                    int
			challenge                 string // a prefix
		}{
			{"anonymous", "GET", "/v1/orders/1", "", 401, `Bearer realm="api.example.com"`},
			{"wrong scope", "GET", "/v1/orders/1", profile, 403, `Bearer realm="api.example.com", error="insufficient_scope"`},
			{"wrong claim", "POST", "/v1/orders", outsider, 403, ""},
			{"allowed write", "POST", "/v1/orders", writer, 200, ""},
			{"default deny", "GET", "/v2/orders", writer, 403, ""},
			{"public path, anonymous", "GET", "/healthz", "", 200, ""},
			{"invalid user token", "GET", "/healthz", reader[:len(reader)-4] + "AAAA", 401, `Bearer realm="portcullis", error="invalid_token"`},
		} {
			t.Run(tt.name, func(t *testing.T) {
				status, challenge, s := e.do(t, tt.method, tt.path, tt.token)
				if status != tt.status || !strings.HasPrefix(challenge, tt.challenge) || (tt.challenge == "") != (challenge == "") {
					t.Fatalf("got %d %q, want %d %q", status, challenge, tt.status, tt.challenge)
				}
				switch {
				case status != 200:
				case tt.token == "":
					if s.Token != "" || len(s.Authorization) != 0 || !slices.Equal(s.Cookies, []string{"theme=dark"}) {
						t.Errorf("an anonymous request reached the upstream with %+v", s)
					}
				case s.VerifyError != "" || s.Claims["scope"] != "orders.write":
					t.Errorf("write token: %s, claims %v", s.VerifyError, s.Claims)
				}
			})
		}
	})

	t.Run("key rotation", func(t *testing.T) {
		_, _, before := e.do(t, "GET", "/v1/orders/42", reader)
		jwks, err := e.fetchJWKS()
		if err != nil {
			t.Fatal(err)
		}
		pubs, err := publicKeys(jwks)
		if err != nil || len(pubs) != 2 || pubs[kid1] == nil || pubs[kid2] == nil {
			t.Fatalf("published %v (%v), want both keys", pubs, err)
		}
		if before.Kid != kid1 {
			t.Fatalf("before rotation signed by %s", before.Kid)
		}
		// Rotate: the second key moves first, and the config is reloaded.
		if err := os.WriteFile(e.keyPath, pemOf(keys().edge2, keys().edge1), 0o600); err != nil {
			t.Fatal(err)
		}
		e.load(t)
		_, _, after := e.do(t, "GET", "/v1/orders/42", reader)
		if after == nil || after.Kid != kid2 || after.VerifyError != "" || after.Sidecar != "ann" {
			t.Fatalf("after rotation: %+v", after)
		}
		// A token of the old key, minted before the rotation, still verifies.
		jwks, err = e.fetchJWKS()
		if err != nil {
			t.Fatal(err)
		}
		if _, kid, err := verify(before.Token, jwks, audience); err != nil || kid != kid1 {
			t.Errorf("the pre-rotation token: kid %s, %v", kid, err)
		}
	})
}
