package jwt

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// Limits on a key set. A JWKS comes from the network, so everything about it is
// bounded before it is believed.
const (
	maxJWKSBytes  = 1 << 20 // a real key set is a few KiB
	maxKeysPerSet = 100     // more is a misconfiguration or an attack on memory
	minRSABits    = 2048    // RFC 7518 §3.3: a key of 2048 bits or larger MUST be used with RS*/PS*
	maxRSABits    = 8192    // verification cost grows with the modulus; bound what a JWKS can make us do
)

// key is one verification key of an issuer, parsed from a JWK (RFC 7517 §4).
type key struct {
	kid string
	// alg is the JWK's own "alg" member (RFC 7517 §4.4), "" when absent. When set,
	// the key is used with that algorithm only.
	alg string
	pub any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	// curveAlg is the one algorithm an EC or OKP key verifies: ES256, ES384 or
	// ES512 by the curve of an EC key, EdDSA for Ed25519; "" for RSA keys.
	curveAlg string
}

// accepts reports whether the key may verify a token signed with alg. This is the
// check that makes algorithm confusion impossible (RFC 8725 §3.1): the token's
// header chooses alg, but only the key's own type decides what alg can mean. An
// RSA public key is never handed to HMAC, an EC key only verifies ES* with the
// hash of its curve (RFC 7518 §3.4), and the JWK's "alg", when present, must match.
func (k *key) accepts(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch k.pub.(type) {
	case *rsa.PublicKey:
		return slices.Contains(rsaAlgs, alg)
	case *ecdsa.PublicKey, ed25519.PublicKey:
		return alg == k.curveAlg
	}
	return false
}

// Algorithms this filter can verify with public keys (RFC 7518 §3.1, RFC 8037 §3.1).
// "none" and the HS* family are absent on purpose: see refusedAlgs.
var (
	rsaAlgs       = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	supportedAlgs = append(slices.Clone(rsaAlgs), "ES256", "ES384", "ES512", "EdDSA")
)

// keySet is an issuer's keys as of one fetch. Immutable once built; a refresh
// replaces the whole set with one atomic store.
type keySet struct {
	byKid map[string][]*key // RFC 7517 §4.5: kids of different key types may collide
	all   []*key
	raw   []byte // the JWKS document, kept to persist it as last-known-good
}

// Results of keySet.lookup.
const (
	keyFound    = iota
	keyUnknown  // no key has the kid: worth a refetch, the issuer may have rotated
	keyMismatch // a key has the kid but cannot verify alg: confusion or a broken issuer
	keyNoKid    // no kid, and not exactly one key fits alg
)

// lookup finds the key for a token's kid and alg. With a kid, only keys with that
// kid are considered (RFC 7515 §4.1.4); without one, the token is accepted only
// when exactly one key of the set can verify alg, so that a kid-less token never
// makes us try every key.
func (s *keySet) lookup(kid, alg string) (*key, int) {
	if s == nil {
		return nil, keyUnknown
	}
	if kid != "" {
		ks := s.byKid[kid]
		for _, k := range ks {
			if k.accepts(alg) {
				return k, keyFound
			}
		}
		if len(ks) > 0 {
			return nil, keyMismatch
		}
		return nil, keyUnknown
	}
	var match *key
	for _, k := range s.all {
		if k.accepts(alg) {
			if match != nil {
				return nil, keyNoKid
			}
			match = k
		}
	}
	if match == nil {
		return nil, keyUnknown
	}
	return match, keyFound
}

// jwk is the JSON form of one key (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2). Only
// public members are read; private ones are detected to refuse the key.
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Alg    string   `json:"alg"`
	// RSA (RFC 7518 §6.3.1)
	N string `json:"n"`
	E string `json:"e"`
	// EC (RFC 7518 §6.2.1) and OKP (RFC 8037 §2)
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	// D is private in every key type (RFC 7518 §6.2.2.1, §6.3.2.1; RFC 8037 §2);
	// its presence means a private key was published.
	D *string `json:"d"`
}

// parseKeySet parses an RFC 7517 §5 JWK Set. Keys that cannot be used for
// signature verification (encryption keys, symmetric "oct" keys, unknown types,
// weak or malformed keys) are skipped and named in skipped; the set is an error
// only when no usable key is left, so that one odd key published by an identity
// provider does not take every other key down with it.
func parseKeySet(raw []byte) (set *keySet, skipped []string, err error) {
	if len(raw) > maxJWKSBytes {
		return nil, nil, fmt.Errorf("key set is larger than %d bytes", maxJWKSBytes)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	if len(doc.Keys) > maxKeysPerSet {
		return nil, nil, fmt.Errorf("key set has %d keys, more than the %d allowed", len(doc.Keys), maxKeysPerSet)
	}
	set = &keySet{byKid: map[string][]*key{}, raw: raw}
	for i, m := range doc.Keys {
		var j jwk
		if err := json.Unmarshal(m, &j); err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		k, err := j.parse()
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d] (kid %q): %v", i, j.Kid, err))
			continue
		}
		set.all = append(set.all, k)
		set.byKid[k.kid] = append(set.byKid[k.kid], k)
	}
	if len(set.all) == 0 {
		if len(skipped) > 0 {
			return nil, skipped, fmt.Errorf("no usable signature key (%s)", strings.Join(skipped, "; "))
		}
		return nil, nil, errors.New("no usable signature key: the set is empty")
	}
	return set, skipped, nil
}

func (j *jwk) parse() (*key, error) {
	if j.D != nil {
		return nil, errors.New("holds private key material (\"d\"); refusing to use a leaked key")
	}
	// RFC 7517 §4.2/§4.3: a key meant for encryption, or whose operations exclude
	// verify, must not verify signatures.
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("use %q is not \"sig\"", j.Use)
	}
	if j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return nil, fmt.Errorf("key_ops %q does not include \"verify\"", j.KeyOps)
	}
	if j.Alg != "" && !slices.Contains(supportedAlgs, j.Alg) {
		return nil, fmt.Errorf("alg %q is not a supported signature algorithm", j.Alg)
	}
	k := &key{kid: j.Kid, alg: j.Alg}
	switch j.Kty {
	case "RSA":
		pub, err := parseRSA(j.N, j.E)
		if err != nil {
			return nil, err
		}
		k.pub = pub
	case "EC":
		pub, alg, err := parseEC(j.Crv, j.X, j.Y)
		if err != nil {
			return nil, err
		}
		k.pub, k.curveAlg = pub, alg
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("OKP curve %q is not supported (only Ed25519)", j.Crv)
		}
		x, err := b64(j.X, "x")
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 x is %d bytes, want %d", len(x), ed25519.PublicKeySize)
		}
		k.pub, k.curveAlg = ed25519.PublicKey(x), "EdDSA"
	case "":
		return nil, errors.New("kty is missing")
	default:
		// "oct" in particular: a symmetric key in a public key set would let anyone
		// who can read the set mint tokens.
		return nil, fmt.Errorf("kty %q is not a supported public key type", j.Kty)
	}
	if j.Alg != "" && !k.accepts(j.Alg) {
		return nil, fmt.Errorf("alg %q does not fit a key of type %s", j.Alg, j.Kty)
	}
	return k, nil
}

// parseRSA reads the modulus and exponent, Base64urlUInt-encoded (RFC 7518 §6.3.1).
func parseRSA(n64, e64 string) (*rsa.PublicKey, error) {
	n, err := b64(n64, "n")
	if err != nil {
		return nil, err
	}
	e, err := b64(e64, "e")
	if err != nil {
		return nil, err
	}
	// RFC 7518 §2 asks for no leading zero octets, but some issuers (Java's
	// BigInteger.toByteArray adds a sign byte) send one; the value is the same, so
	// the zeros are dropped rather than the key.
	e = bytes.TrimLeft(e, "\x00")
	if len(e) > 4 {
		return nil, errors.New("exponent e is too large")
	}
	var ev int
	for _, b := range e {
		ev = ev<<8 | int(b)
	}
	if ev < 3 || ev%2 == 0 || ev > 1<<31-1 {
		return nil, fmt.Errorf("exponent e=%d is not an odd number of at least 3", ev)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: ev}
	if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("RSA modulus of %d bits is outside %d to %d", bits, minRSABits, maxRSABits)
	}
	return pub, nil
}

// parseEC reads an EC public key (RFC 7518 §6.2.1) and returns it with the one
// algorithm its curve is used with (RFC 7518 §3.4).
func parseEC(crv, x64, y64 string) (*ecdsa.PublicKey, string, error) {
	var curve elliptic.Curve
	var alg string
	switch crv {
	case "P-256":
		curve, alg = elliptic.P256(), "ES256"
	case "P-384":
		curve, alg = elliptic.P384(), "ES384"
	case "P-521":
		curve, alg = elliptic.P521(), "ES512"
	default:
		return nil, "", fmt.Errorf("EC curve %q is not supported", crv)
	}
	x, err := b64(x64, "x")
	if err != nil {
		return nil, "", err
	}
	y, err := b64(y64, "y")
	if err != nil {
		return nil, "", err
	}
	// RFC 7518 §6.2.1.2/§6.2.1.3: each coordinate is the full size of the curve's
	// field, leading zeros kept.
	size := (curve.Params().BitSize + 7) / 8
	if len(x) != size || len(y) != size {
		return nil, "", fmt.Errorf("%s coordinates must be %d bytes", crv, size)
	}
	point := make([]byte, 0, 1+2*size)
	point = append(point, 4) // SEC 1 §2.3.3 uncompressed point
	point = append(append(point, x...), y...)
	// Rejects points not on the curve (invalid-curve attacks) and the identity.
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, "", fmt.Errorf("%s point: %w", crv, err)
	}
	return pub, alg, nil
}

// b64 decodes a base64url member without padding (RFC 7515 §2, RFC 7517 §4). Strict
// decoding refuses non-zero trailing bits, so that one key has one encoding.
func b64(s, name string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%s is missing", name)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s is not base64url: %w", name, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", name)
	}
	return b, nil
}
