package edgetoken_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// testKeys are made once per test binary: RSA generation is slow under -race.
type testKeys struct {
	ec1, ec2 *ecdsa.PrivateKey
	ec384    *ecdsa.PrivateKey
	rsa      *rsa.PrivateKey
	rsa1024  *rsa.PrivateKey
}

var keys = sync.OnceValue(func() *testKeys {
	k := &testKeys{}
	var err error
	for _, p := range []**ecdsa.PrivateKey{&k.ec1, &k.ec2} {
		if *p, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	}
	if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		panic(err)
	}
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsa1024, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
		panic(err)
	}
	return k
})

// sec1 is an EC key as "EC PRIVATE KEY" (what openssl ecparam -genkey writes).
func sec1(k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// pkcs8 is any key as "PRIVATE KEY" (what openssl genpkey writes).
func pkcs8(k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// pkcs1 is an RSA key as "RSA PRIVATE KEY".
func pkcs1(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func join(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// writeFile writes data to name in dir and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var b64 = base64.RawURLEncoding

// verificationKeys parses a JWK Set the way a verifier would, independently of
// the package: kid -> public key, and each key's members as published.
func verificationKeys(t testing.TB, jwks []byte) (map[string]crypto.PublicKey, []map[string]any) {
	t.Helper()
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &doc); err != nil {
		t.Fatalf("JWKS does not parse: %v\n%s", err, jwks)
	}
	out := map[string]crypto.PublicKey{}
	for i, k := range doc.Keys {
		str := func(name string) string {
			s, _ := k[name].(string)
			return s
		}
		num := func(name string) *big.Int {
			b, err := b64.DecodeString(str(name))
			if err != nil {
				t.Fatalf("keys[%d].%s: %v", i, name, err)
			}
			return new(big.Int).SetBytes(b)
		}
		switch str("kty") {
		case "EC":
			if str("crv") != "P-256" {
				t.Fatalf("keys[%d]: crv %q", i, str("crv"))
			}
			out[str("kid")] = &ecdsa.PublicKey{Curve: elliptic.P256(), X: num("x"), Y: num("y")}
		case "RSA":
			out[str("kid")] = &rsa.PublicKey{N: num("n"), E: int(num("e").Int64())}
		default:
			t.Fatalf("keys[%d]: kty %q", i, str("kty"))
		}
	}
	return out, doc.Keys
}

// kidOf is the RFC 7638 thumbprint computed here, apart from the package: the
// required members marshalled by encoding/json, which sorts map keys.
func kidOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	var m map[string]string
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		m = map[string]string{"kty": "EC", "crv": "P-256",
			"x": b64.EncodeToString(p.X.FillBytes(make([]byte, 32))), "y": b64.EncodeToString(p.Y.FillBytes(make([]byte, 32)))}
	case *rsa.PublicKey:
		m = map[string]string{"kty": "RSA", "n": b64.EncodeToString(p.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(p.E)).Bytes())}
	default:
		panic(fmt.Sprintf("%T", pub))
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return sha256b64(b)
}

func sha256b64(b []byte) string {
	sum := sha256.Sum256(b)
	return b64.EncodeToString(sum[:])
}
