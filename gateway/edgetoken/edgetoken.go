// Package edgetoken is the format and the keys of the gateway's internal tokens:
// short-lived JSON Web Tokens (RFC 7519, compact JWS, RFC 7515) that the ingress
// mints for an authenticated caller and sends upstream in place of the caller's
// own credentials, so that user tokens and session cookies never travel past the
// edge (SP 800-204 MS-SS-2, MS-SS-10, MS-SS-12).
//
// A Signer holds a key set read from a PEM file of private keys, EC P-256 (ES256)
// or RSA of 2048 bits or more (RS256). The first key signs; every key is published
// in the JWK Set (RFC 7517) that verifiers fetch, so that during a rotation tokens
// of the outgoing key still verify. Key IDs are JWK thumbprints (RFC 7638): the
// same key has the same kid on every gateway and after every restart.
//
// Signers are shared. Load returns the same *Signer for as long as a key file's
// contents stay the same, so every route, every filter and every snapshot that
// names the file signs with the same keys and publishes the same set.
//
// ScopeSet reads a caller's scopes, as filter.Identity.Scopes does, into a bit
// mask over a fixed list without allocating: the edge authorization filter checks
// required scopes with it, the minter narrows a caller's scopes to a route's.
//
// It is not for: verifying tokens (the jwt filter does that, against the published
// set), deciding what a token carries (the tokenmint filter does), or keeping keys
// in a control plane (the next step: the control plane will hold the key and
// publish the set).
package edgetoken

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// MaxTTL is the longest lifetime a token may be minted with. Internal tokens are
// bearer credentials inside the mesh; a short life bounds what a leaked one is
// worth, and the edge mints a fresh one whenever it is needed.
const MaxTTL = 15 * time.Minute

// ReservedClaims are the claim names Mint writes itself; Extra may not set them.
// "scp" is among them because verifiers read it as the caller's scopes when
// "scope" is absent (filter.Identity.Scopes): a copied scp would undo the
// narrowing of scopes.
var ReservedClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope", "scp"}

// Claims is what a minted token says.
type Claims struct {
	// Issuer is the iss claim: who minted the token ("https://edge.portcullis.internal").
	// Required.
	Issuer string
	// Subject is the sub claim: the caller the token stands for. Required.
	Subject string
	// Audience is the aud claim: the one service the token is for. Required.
	Audience string
	// Scopes become the scope claim, space-separated (RFC 8693 §4.2); none: no
	// scope claim. Each must be a valid scope-token (RFC 6749 §3.3).
	Scopes []string
	// TTL is the lifetime: exp is iat + TTL. More than zero, at most MaxTTL.
	TTL time.Duration
	// Extra claims, copied as they are; they must marshal to JSON and may not use
	// a ReservedClaims name.
	Extra map[string]any
}

// Signer mints tokens with the first key of its set and publishes the whole set.
// It is immutable and safe for concurrent use.
type Signer struct {
	keys   []*signingKey // keys[0] signs
	jwks   []byte
	digest [sha256.Size]byte // of the PEM it was made from
}

// NewSigner parses a PEM document of one or more private keys (see the package
// doc) and returns a Signer for them. Most callers want Load, which shares
// Signers per key file.
func NewSigner(pemData []byte) (*Signer, error) {
	keys, err := parseKeys(pemData)
	if err != nil {
		return nil, err
	}
	jwks, err := publicSet(keys)
	if err != nil {
		return nil, err
	}
	return &Signer{keys: keys, jwks: jwks, digest: sha256.Sum256(pemData)}, nil
}

// KeyID is the kid of the key that signs.
func (s *Signer) KeyID() string { return s.keys[0].kid }

// Algorithm is the alg of the key that signs: "ES256" or "RS256".
func (s *Signer) Algorithm() string { return s.keys[0].alg }

// KeyIDs lists the kids of every published key, the signing key first.
func (s *Signer) KeyIDs() []string {
	out := make([]string, len(s.keys))
	for i, k := range s.keys {
		out[i] = k.kid
	}
	return out
}

// JWKS returns the public keys as a JWK Set document (RFC 7517 §5), in the order
// of the key file. It never holds a private member. The caller owns the copy.
func (s *Signer) JWKS() []byte { return bytes.Clone(s.jwks) }

var b64 = base64.RawURLEncoding

// payload holds the registered claims in the order they are written.
type payload struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Aud   string `json:"aud"`
	Scope string `json:"scope,omitempty"`
	Iat   int64  `json:"iat"`
	Nbf   int64  `json:"nbf"`
	Exp   int64  `json:"exp"`
	Jti   string `json:"jti"`
}

// Mint returns a signed compact JWT for c, issued now.
func (s *Signer) Mint(c Claims) (string, error) { return s.MintAt(c, time.Now()) }

// MintAt is Mint with the issue time given: iat and nbf are now, exp is now + TTL,
// all in whole seconds (RFC 7519 §2 NumericDate). jti is 128 random bits, so that
// a verifier that wants to can tell tokens apart.
func (s *Signer) MintAt(c Claims, now time.Time) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	iat := now.Unix()
	p := payload{
		Iss: c.Issuer, Sub: c.Subject, Aud: c.Audience,
		Iat: iat, Nbf: iat, Exp: now.Add(c.TTL).Unix(),
		Jti: rand.Text(),
	}
	if len(c.Scopes) > 0 {
		p.Scope = strings.Join(c.Scopes, " ")
	}
	body, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("edgetoken: %w", err)
	}
	if len(c.Extra) > 0 {
		extra, err := json.Marshal(c.Extra) // a map: keys sorted, so tokens are reproducible
		if err != nil {
			return "", fmt.Errorf("edgetoken: extra claims: %w", err)
		}
		// {"iss":...,"jti":"..."} + {"a":1} -> {"iss":...,"jti":"...","a":1}
		body = append(append(body[:len(body)-1], ','), extra[1:]...)
	}
	k := s.keys[0]
	buf := make([]byte, 0, len(k.header)+1+b64.EncodedLen(len(body))+1+b64.EncodedLen(k.sigLen))
	buf = append(buf, k.header...)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, body)
	sig, err := k.method.Sign(string(buf), k.priv)
	if err != nil {
		return "", fmt.Errorf("edgetoken: signing with %s key %s: %w", k.alg, k.kid, err)
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return string(buf), nil
}

// check refuses claims that would make a token nobody should accept.
func (c *Claims) check() error {
	var errs []error
	for _, f := range [...]struct{ name, v string }{{"Issuer", c.Issuer}, {"Subject", c.Subject}, {"Audience", c.Audience}} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		}
	}
	if c.TTL <= 0 || c.TTL > MaxTTL {
		errs = append(errs, fmt.Errorf("TTL %v is outside (0, %v]", c.TTL, MaxTTL))
	}
	for _, sc := range c.Scopes {
		if !ValidScope(sc) {
			errs = append(errs, fmt.Errorf("scope %q is not a scope-token (RFC 6749 §3.3)", sc))
		}
	}
	for name := range c.Extra {
		if slices.Contains(ReservedClaims, name) {
			errs = append(errs, fmt.Errorf("extra claim %q is written by Mint itself", name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("edgetoken: %w", errors.Join(errs...))
	}
	return nil
}

// ValidScope reports whether s is a scope-token of RFC 6749 §3.3: one or more of
// %x21 / %x23-5B / %x5D-7E (printable ASCII but space, '"' and '\'), so that it
// can be joined with spaces and put in a WWW-Authenticate quoted-string as is.
func ValidScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
