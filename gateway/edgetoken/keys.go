package edgetoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	gojwt "github.com/golang-jwt/jwt/v5"
)

// Bounds on a key file.
const (
	MaxKeys    = 16   // a rotation needs two or three; more is a mistake
	MinRSABits = 2048 // RFC 7518 §3.3: 2048 bits or more MUST be used with RS256
	MaxRSABits = 8192 // the jwt filter's bound: a bigger key would not verify there
)

// signingKey is one private key of a set, ready to sign.
type signingKey struct {
	kid    string
	alg    string // "ES256" or "RS256"
	method gojwt.SigningMethod
	priv   crypto.Signer // *ecdsa.PrivateKey or *rsa.PrivateKey
	jwk    publicJWK
	header string // base64url of the JOSE header, made once
	sigLen int    // bytes of a signature
}

// publicJWK is the published form of a key (RFC 7517 §4, RFC 7518 §6.2.1 and
// §6.3.1). It has no field for a private member, so none can be written.
type publicJWK struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// parseKeys reads every private key of a PEM document, in order. Anything that is
// not a usable private key is an error naming its block, rather than skipped: a
// key file is written by an operator, and a key silently left out of a rotation
// would surface only when tokens stop verifying.
func parseKeys(data []byte) ([]*signingKey, error) {
	var keys []*signingKey
	seen := map[string]int{} // kid -> block
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		where := fmt.Sprintf("PEM block %d (%s)", n, block.Type)
		priv, err := parseBlock(block)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if priv == nil {
			continue // EC PARAMETERS, written by "openssl ecparam -genkey" before the key
		}
		k, err := newSigningKey(priv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if first, dup := seen[k.kid]; dup {
			return nil, fmt.Errorf("%s: the same key as PEM block %d", where, first)
		}
		seen[k.kid] = n
		keys = append(keys, k)
		if len(keys) > MaxKeys {
			return nil, fmt.Errorf("more than %d keys", MaxKeys)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM-encoded private key found")
	}
	return keys, nil
}

// parseBlock returns the private key of one PEM block, or nil for a block that is
// allowed but holds none.
func parseBlock(b *pem.Block) (crypto.Signer, error) {
	if _, enc := b.Headers["Proc-Type"]; enc {
		return nil, errors.New("encrypted PEM is not supported: protect the file with its permissions instead")
	}
	var (
		k   any
		err error
	)
	switch b.Type {
	case "EC PARAMETERS":
		return nil, nil
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("encrypted keys are not supported: protect the file with its permissions instead")
	default:
		return nil, errors.New("not a private key; the file must hold private keys only")
	}
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return nil, errors.New("Ed25519 keys are not supported: use EC P-256 (ES256) or RSA (RS256)")
	}
	return nil, fmt.Errorf("unsupported key type %T", k)
}

// newSigningKey checks a key's strength and prepares what signing with it needs.
func newSigningKey(priv crypto.Signer) (*signingKey, error) {
	jwk, err := publicJWKOf(priv.Public())
	if err != nil {
		return nil, err
	}
	k := &signingKey{priv: priv, kid: jwk.Kid, alg: jwk.Alg, jwk: jwk}
	switch p := priv.(type) {
	case *ecdsa.PrivateKey:
		k.method, k.sigLen = gojwt.SigningMethodES256, 64 // r || s, 32 bytes each (RFC 7518 §3.4)
	case *rsa.PrivateKey:
		k.method, k.sigLen = gojwt.SigningMethodRS256, (p.N.BitLen()+7)/8
	}
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{k.alg, k.kid, "JWT"})
	if err != nil {
		return nil, err
	}
	k.header = b64.EncodeToString(hdr)
	return k, nil
}

// publicJWKOf is the published JWK of a public key, with its alg and its
// thumbprint as kid, or an error for a key that may not sign.
func publicJWKOf(pub crypto.PublicKey) (publicJWK, error) {
	var j publicJWK
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return j, fmt.Errorf("EC curve %s is not supported: use P-256 (ES256)", p.Curve.Params().Name)
		}
		raw, err := p.Bytes() // 0x04 || x || y, each 32 bytes (SEC 1 §2.3.3)
		if err != nil {
			return j, err
		}
		j = publicJWK{Kty: "EC", Alg: "ES256", Crv: "P-256", X: b64.EncodeToString(raw[1:33]), Y: b64.EncodeToString(raw[33:])}
		// RFC 7638 §3.2: the required members, in lexicographic order, no spaces.
		j.Kid = thumbprint(`{"crv":"P-256","kty":"EC","x":"` + j.X + `","y":"` + j.Y + `"}`)
	case *rsa.PublicKey:
		if bits := p.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
			return j, fmt.Errorf("RSA key of %d bits is outside %d to %d", bits, MinRSABits, MaxRSABits)
		}
		// RFC 7518 §6.3.1: Base64urlUInt, the minimal big-endian bytes.
		j = publicJWK{Kty: "RSA", Alg: "RS256", N: b64.EncodeToString(p.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(p.E)).Bytes())}
		j.Kid = thumbprint(`{"e":"` + j.E + `","kty":"RSA","n":"` + j.N + `"}`)
	default:
		return j, fmt.Errorf("unsupported key type %T", pub)
	}
	j.Use = "sig"
	return j, nil
}

// thumbprint is the RFC 7638 JWK thumbprint, SHA-256, base64url, of the canonical
// JSON of a key's required members. The members hold only base64url characters
// and fixed names, so the string needs no JSON escaping.
func thumbprint(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return b64.EncodeToString(sum[:])
}

// publicSet is the JWK Set of the keys' public parts.
func publicSet(keys []*signingKey) ([]byte, error) {
	doc := struct {
		Keys []publicJWK `json:"keys"`
	}{Keys: make([]publicJWK, len(keys))}
	for i, k := range keys {
		doc.Keys[i] = k.jwk
	}
	return json.Marshal(doc)
}
