package tokenmint_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	_ "github.com/portcullis/portcullis/gateway/filters/authz"
	_ "github.com/portcullis/portcullis/gateway/filters/jwks"
	_ "github.com/portcullis/portcullis/gateway/filters/jwt"
	_ "github.com/portcullis/portcullis/gateway/filters/tokenmint"
)

const (
	edgeIssuer = "https://edge.portcullis.internal"
	audience   = "orders"
)

// testKeys are made once per test binary.
type testKeys struct {
	edge1, edge2, idp *ecdsa.PrivateKey
}

var keys = sync.OnceValue(func() *testKeys {
	k := &testKeys{}
	for _, p := range []**ecdsa.PrivateKey{&k.edge1, &k.edge2, &k.idp} {
		var err error
		if *p, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	}
	return k
})

func pemOf(ks ...*ecdsa.PrivateKey) []byte {
	var out []byte
	for _, k := range ks {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			panic(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)
	}
	return out
}

// keyFile writes the keys, in order, to a new 0600 file and returns its path.
func keyFile(t testing.TB, ks ...*ecdsa.PrivateKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "edge-keys.pem")
	if err := os.WriteFile(p, pemOf(ks...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var b64 = base64.RawURLEncoding

// thumbprint is the RFC 7638 kid of an EC P-256 key, computed here.
func thumbprint(k *ecdsa.PrivateKey) string {
	m := map[string]string{"kty": "EC", "crv": "P-256",
		"x": b64.EncodeToString(k.X.FillBytes(make([]byte, 32))), "y": b64.EncodeToString(k.Y.FillBytes(make([]byte, 32)))}
	b, _ := json.Marshal(m) // sorted keys, no spaces: RFC 7638 §3.3
	return sha256b64(b)
}

// publicKeys parses a JWK Set of EC keys as an upstream would: kid -> key.
func publicKeys(jwks []byte) (map[string]*ecdsa.PublicKey, error) {
	var doc struct {
		Keys []struct {
			Kty, Crv, Kid, X, Y, D string
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &doc); err != nil {
		return nil, err
	}
	out := map[string]*ecdsa.PublicKey{}
	for _, k := range doc.Keys {
		if k.Kty != "EC" || k.Crv != "P-256" || k.D != "" {
			return nil, fmt.Errorf("unexpected key %+v", k)
		}
		x, errX := b64.DecodeString(k.X)
		y, errY := b64.DecodeString(k.Y)
		if err := errors.Join(errX, errY); err != nil {
			return nil, err
		}
		out[k.Kid] = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	}
	return out, nil
}

// verify checks an internal token as an upstream would, with golang-jwt, against
// the given key set: ES256 only, issuer the edge, audience aud, exp required.
func verify(tok string, jwks []byte, aud string) (gojwt.MapClaims, string, error) {
	pubs, err := publicKeys(jwks)
	if err != nil {
		return nil, "", err
	}
	var kid string
	c := gojwt.MapClaims{}
	_, err = gojwt.NewParser(
		gojwt.WithValidMethods([]string{"ES256"}), gojwt.WithIssuer(edgeIssuer),
		gojwt.WithAudience(aud), gojwt.WithExpirationRequired(), gojwt.WithIssuedAt(),
	).ParseWithClaims(tok, c, func(t *gojwt.Token) (any, error) {
		kid, _ = t.Header["kid"].(string)
		if k, ok := pubs[kid]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("unknown kid %q", kid)
	})
	return c, kid, err
}

// event is one security event a filter reported.
type event struct{ kind, detail string }

type events struct {
	mu  sync.Mutex
	got []event
}

func (e *events) SecurityEvent(kind, _, detail string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, event{kind, detail})
}

func (e *events) take() []event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.got
	e.got = nil
	return out
}

// build builds a filter of type typ with cfg, reporting to ev when it is not nil.
func build(t testing.TB, typ, cfg string, ev *events) (filter.Filter, error) {
	t.Helper()
	return filtertest.Build(t, typ, cfg, filtertest.WithBuild(func(b *filter.Build) {
		if ev != nil {
			b.Events = ev
		}
	}))
}

func mustBuild(t testing.TB, typ, cfg string, ev *events) filter.Filter {
	t.Helper()
	f, err := build(t, typ, cfg, ev)
	if err != nil {
		t.Fatalf("build %s: %v", typ, err)
	}
	return f
}

// result is what the client and the upstream saw of one request.
type result struct {
	status    int
	reason    string
	challenge string
	upstream  http.Header // nil when the request did not reach the upstream
}

// serve runs req through f as caller id (nil: anonymous) in front of a terminal
// that records the headers the upstream would get. An error that is not a
// *filter.Error fails the test, as does a change to the inbound request.
func serve(t testing.TB, f filter.Filter, req *http.Request, id *filter.Identity) result {
	t.Helper()
	var res result
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		res.upstream = r.Header.Clone()
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	if id != nil {
		req = filter.WithIdentity(req, id)
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
		t.Errorf("the filter changed the inbound request's headers: %v -> %v", before, req.Header)
	}
	return res
}

// bearerOf returns the token of an "Authorization: Bearer" value, failing the test
// for anything else.
func bearerOf(t testing.TB, h http.Header) string {
	t.Helper()
	v := h.Values("Authorization")
	if len(v) != 1 || !strings.HasPrefix(v[0], "Bearer ") {
		t.Fatalf("the upstream got Authorization %q, want one Bearer token", v)
	}
	return strings.TrimPrefix(v[0], "Bearer ")
}

func sha256b64(b []byte) string {
	sum := sha256.Sum256(b)
	return b64.EncodeToString(sum[:])
}
