package edgetoken_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/portcullis/portcullis/gateway/edgetoken"
)

func claims() edgetoken.Claims {
	return edgetoken.Claims{
		Issuer: "https://edge.portcullis.internal", Subject: "user-42", Audience: "orders",
		Scopes: []string{"orders.read", "orders.write"}, TTL: time.Minute,
		Extra: map[string]any{"email": "ann@example.com", "org.id": "acme", "roles": []string{"a", "b"}},
	}
}

// parse verifies tok with golang-jwt against the signer's published set, as an
// upstream would, and returns its header and claims.
func parse(t *testing.T, s *edgetoken.Signer, tok string) (map[string]any, gojwt.MapClaims) {
	t.Helper()
	pubs, _ := verificationKeys(t, s.JWKS())
	c := gojwt.MapClaims{}
	parsed, err := gojwt.NewParser(
		gojwt.WithValidMethods([]string{"ES256", "RS256"}),
		gojwt.WithAudience("orders"), gojwt.WithIssuer("https://edge.portcullis.internal"),
		gojwt.WithExpirationRequired(), gojwt.WithIssuedAt(), gojwt.WithStrictDecoding(),
	).ParseWithClaims(tok, c, func(tk *gojwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		return pubs[kid], nil
	})
	if err != nil {
		t.Fatalf("the minted token does not verify: %v", err)
	}
	return parsed.Header, c
}

func TestMintVerifies(t *testing.T) {
	for _, tt := range []struct {
		name string
		pem  []byte
		alg  string
		pub  crypto.PublicKey
	}{
		{"EC SEC1", sec1(keys().ec1), "ES256", &keys().ec1.PublicKey},
		{"EC PKCS8", pkcs8(keys().ec1), "ES256", &keys().ec1.PublicKey},
		{"RSA PKCS1", pkcs1(keys().rsa), "RS256", &keys().rsa.PublicKey},
		{"RSA PKCS8", pkcs8(keys().rsa), "RS256", &keys().rsa.PublicKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := edgetoken.NewSigner(tt.pem)
			if err != nil {
				t.Fatal(err)
			}
			if s.Algorithm() != tt.alg || s.KeyID() != kidOf(t, tt.pub) {
				t.Errorf("Algorithm, KeyID = %s, %s; want %s, %s", s.Algorithm(), s.KeyID(), tt.alg, kidOf(t, tt.pub))
			}
			now := time.Now()
			tok, err := s.MintAt(claims(), now)
			if err != nil {
				t.Fatal(err)
			}
			hdr, c := parse(t, s, tok)
			if hdr["alg"] != tt.alg || hdr["kid"] != s.KeyID() || hdr["typ"] != "JWT" || len(hdr) != 3 {
				t.Errorf("header %v", hdr)
			}
			want := map[string]any{
				"iss": "https://edge.portcullis.internal", "sub": "user-42", "aud": "orders",
				"scope": "orders.read orders.write", "iat": float64(now.Unix()), "nbf": float64(now.Unix()),
				"exp": float64(now.Add(time.Minute).Unix()), "email": "ann@example.com", "org.id": "acme",
				"roles": []any{"a", "b"},
			}
			jti, _ := c["jti"].(string)
			delete(c, "jti")
			if len(jti) < 22 { // 128 bits in base32
				t.Errorf("jti %q is too short to be unique", jti)
			}
			if got, _ := json.Marshal(c); string(got) != mustJSON(want) {
				t.Errorf("claims\n got %s\nwant %s", got, mustJSON(want))
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestMintIsFreshEachTime(t *testing.T) {
	s, err := edgetoken.NewSigner(sec1(keys().ec1))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 20 {
		tok, err := s.Mint(claims())
		if err != nil {
			t.Fatal(err)
		}
		_, c := parse(t, s, tok)
		jti := c["jti"].(string)
		if seen[jti] {
			t.Fatalf("jti %q minted twice", jti)
		}
		seen[jti] = true
	}
}

func TestMintWithoutScopesOrExtra(t *testing.T) {
	s, err := edgetoken.NewSigner(sec1(keys().ec1))
	if err != nil {
		t.Fatal(err)
	}
	c := claims()
	c.Scopes, c.Extra = nil, nil
	tok, err := s.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	_, got := parse(t, s, tok)
	if _, has := got["scope"]; has || len(got) != 7 {
		t.Errorf("claims %v: want exactly iss sub aud iat nbf exp jti", got)
	}
}

func TestClaimsErrors(t *testing.T) {
	s, err := edgetoken.NewSigner(sec1(keys().ec1))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*edgetoken.Claims)
		want []string
	}{
		{"no issuer", func(c *edgetoken.Claims) { c.Issuer = "" }, []string{"Issuer is required"}},
		{"no subject", func(c *edgetoken.Claims) { c.Subject = "" }, []string{"Subject is required"}},
		{"no audience", func(c *edgetoken.Claims) { c.Audience = "" }, []string{"Audience is required"}},
		{"zero ttl", func(c *edgetoken.Claims) { c.TTL = 0 }, []string{"TTL 0s"}},
		{"ttl too long", func(c *edgetoken.Claims) { c.TTL = 16 * time.Minute }, []string{"TTL 16m0s", "15m0s"}},
		{"scope with space", func(c *edgetoken.Claims) { c.Scopes = []string{"a b"} }, []string{`scope "a b"`}},
		{"scope with quote", func(c *edgetoken.Claims) { c.Scopes = []string{`a"`} }, []string{"scope-token"}},
		{"empty scope", func(c *edgetoken.Claims) { c.Scopes = []string{""} }, []string{`scope ""`}},
		{"reserved extra", func(c *edgetoken.Claims) { c.Extra = map[string]any{"exp": 1} }, []string{`"exp" is written by Mint`}},
		{"scp extra", func(c *edgetoken.Claims) { c.Extra = map[string]any{"scp": []string{"admin"}} }, []string{`"scp"`}},
		{"unmarshalable extra", func(c *edgetoken.Claims) { c.Extra = map[string]any{"f": func() {}} }, []string{"extra claims"}},
		{"every error", func(c *edgetoken.Claims) { c.Issuer, c.Audience, c.TTL = "", "", time.Hour },
			[]string{"Issuer", "Audience", "TTL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := claims()
			tt.mod(&c)
			tok, err := s.Mint(c)
			if err == nil {
				t.Fatalf("minted %q", tok)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestKeyFiles(t *testing.T) {
	k := keys()
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}})
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{0x30, 0x00}})
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}})
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	var many [][]byte
	for range edgetoken.MaxKeys + 1 {
		ek, err := ecdsa.GenerateKey(k.ec1.Curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		many = append(many, sec1(ek))
	}
	tests := []struct {
		name string
		pem  []byte
		kids []crypto.PublicKey // the published keys in order, when accepted
		want []string           // error substrings, when refused
	}{
		{name: "ec then rsa", pem: join(sec1(k.ec1), pkcs1(k.rsa)), kids: []crypto.PublicKey{&k.ec1.PublicKey, &k.rsa.PublicKey}},
		{name: "rsa then ec", pem: join(pkcs8(k.rsa), pkcs8(k.ec2)), kids: []crypto.PublicKey{&k.rsa.PublicKey, &k.ec2.PublicKey}},
		{name: "openssl ecparam output", pem: join([]byte("comment\n"), params, sec1(k.ec1)), kids: []crypto.PublicKey{&k.ec1.PublicKey}},
		{name: "sixteen keys", pem: join(many[:edgetoken.MaxKeys]...), kids: nil},

		{name: "empty", pem: nil, want: []string{"no PEM-encoded private key"}},
		{name: "not pem", pem: []byte("-----BEGIN nothing"), want: []string{"no PEM-encoded private key"}},
		{name: "certificate", pem: join(sec1(k.ec1), cert), want: []string{"PEM block 2 (CERTIFICATE)", "private keys only"}},
		{name: "public key", pem: pub, want: []string{"PEM block 1 (PUBLIC KEY)"}},
		{name: "encrypted", pem: encrypted, want: []string{"PEM block 1", "encrypted"}},
		{name: "pkcs8 encrypted", pem: pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), want: []string{"encrypted"}},
		{name: "broken der", pem: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}}), want: []string{"PEM block 1 (EC PRIVATE KEY)"}},
		{name: "p384", pem: sec1(k.ec384), want: []string{"P-384", "P-256"}},
		{name: "rsa 1024", pem: pkcs1(k.rsa1024), want: []string{"1024 bits", "2048"}},
		{name: "ed25519", pem: pkcs8(edPriv), want: []string{"Ed25519"}},
		{name: "same key twice", pem: join(sec1(k.ec1), pkcs8(k.ec1)), want: []string{"PEM block 2", "same key as PEM block 1"}},
		{name: "too many", pem: join(many...), want: []string{"more than 16 keys"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := edgetoken.NewSigner(tt.pem)
			if len(tt.want) > 0 {
				if err == nil {
					t.Fatalf("accepted, with kids %v", s.KeyIDs())
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.kids == nil {
				if n := len(s.KeyIDs()); n != edgetoken.MaxKeys {
					t.Errorf("%d keys", n)
				}
				return
			}
			var want []string
			for _, p := range tt.kids {
				want = append(want, kidOf(t, p))
			}
			pubs, raw := verificationKeys(t, s.JWKS())
			var published []string
			for _, m := range raw {
				published = append(published, m["kid"].(string))
			}
			if !slices.Equal(s.KeyIDs(), want) || !slices.Equal(published, want) || s.KeyID() != want[0] {
				t.Errorf("KeyIDs %v, published %v, want %v signing with the first", s.KeyIDs(), published, want)
			}
			for i, p := range tt.kids {
				if !pubs[want[i]].(interface{ Equal(crypto.PublicKey) bool }).Equal(p) {
					t.Errorf("published key %d is not the file's key", i)
				}
			}
		})
	}
}

// TestThumbprintRFC7638 checks the kid against the example of RFC 7638 §3.1.
func TestThumbprintRFC7638(t *testing.T) {
	const n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	nb, err := b64.DecodeString(n)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := edgetoken.KeyIDOf(&rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; kid != want {
		t.Errorf("kid %s, want %s", kid, want)
	}
	// EC: the package's canonical string against encoding/json's.
	if got, err := edgetoken.KeyIDOf(&keys().ec1.PublicKey); err != nil || got != kidOf(t, &keys().ec1.PublicKey) {
		t.Errorf("EC kid %s, %v; want %s", got, err, kidOf(t, &keys().ec1.PublicKey))
	}
}

// TestJWKSHasNoPrivatePart: the published set holds public members only, and no
// private value appears anywhere in it, in any encoding a JWK would use.
func TestJWKSHasNoPrivatePart(t *testing.T) {
	k := keys()
	s, err := edgetoken.NewSigner(join(sec1(k.ec1), pkcs1(k.rsa), pkcs8(k.ec2)))
	if err != nil {
		t.Fatal(err)
	}
	raw := s.JWKS()
	_, published := verificationKeys(t, raw)
	public := map[string][]string{
		"EC":  {"kty", "use", "alg", "kid", "crv", "x", "y"},
		"RSA": {"kty", "use", "alg", "kid", "n", "e"},
	}
	for i, m := range published {
		allowed := public[m["kty"].(string)]
		for name := range m {
			if !slices.Contains(allowed, name) {
				t.Errorf("keys[%d] has member %q, which is not a public member of a %s key", i, name, m["kty"])
			}
		}
		if m["use"] != "sig" {
			t.Errorf("keys[%d].use = %v", i, m["use"])
		}
	}
	secrets := map[string]*big.Int{"ec1.D": k.ec1.D, "ec2.D": k.ec2.D, "rsa.D": k.rsa.D,
		"rsa.P": k.rsa.Primes[0], "rsa.Q": k.rsa.Primes[1], "rsa.Dp": k.rsa.Precomputed.Dp,
		"rsa.Dq": k.rsa.Precomputed.Dq, "rsa.Qinv": k.rsa.Precomputed.Qinv}
	for name, v := range secrets {
		for _, enc := range []string{b64.EncodeToString(v.Bytes()), v.Text(16), v.String()} {
			if len(enc) >= 16 && strings.Contains(string(raw), enc[:16]) {
				t.Errorf("the JWKS contains %s", name)
			}
		}
	}
	// The set is a copy: changing it does not change the next one.
	raw[0] = 'X'
	if s.JWKS()[0] != '{' {
		t.Error("JWKS returned the signer's own bytes")
	}
}
