package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// material is everything the two configs and the client need: the listener's
// certificate, two token issuers (RS256 and ES256) with their key sets on disk, and
// tokens from each.
type material struct {
	dir      string
	certFile string
	keyFile  string
	roots    *x509.CertPool
	rsJWKS   string
	esJWKS   string
	tokens   []string // alternating RS256 and ES256
}

const (
	rsIssuer = "https://rs.issuer.test"
	esIssuer = "https://es.issuer.test"
	audience = "edge.test"
	origin   = "https://app.example.test"
)

func newMaterial(dir string, subjects int) (*material, error) {
	m := &material{dir: dir}
	if err := m.serverCert(); err != nil {
		return nil, err
	}
	rsKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	esKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if m.rsJWKS, err = writeJWKS(dir, "rs.jwks.json", "rs-1", rsKey.Public()); err != nil {
		return nil, err
	}
	if m.esJWKS, err = writeJWKS(dir, "es.jwks.json", "es-1", esKey.Public()); err != nil {
		return nil, err
	}
	exp := time.Now().Add(2 * time.Hour)
	for i := range subjects {
		claims := jwt.MapClaims{"aud": audience, "exp": exp.Unix(), "iat": time.Now().Unix(), "sub": fmt.Sprintf("user-%d", i), "scope": "read write"}
		claims["iss"] = rsIssuer
		rs := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		rs.Header["kid"] = "rs-1"
		rst, err := rs.SignedString(rsKey)
		if err != nil {
			return nil, err
		}
		claims2 := jwt.MapClaims{}
		for k, v := range claims {
			claims2[k] = v
		}
		claims2["iss"] = esIssuer
		es := jwt.NewWithClaims(jwt.SigningMethodES256, claims2)
		es.Header["kid"] = "es-1"
		est, err := es.SignedString(esKey)
		if err != nil {
			return nil, err
		}
		m.tokens = append(m.tokens, rst, est)
	}
	return m, nil
}

// serverCert makes a self-signed ECDSA P-256 certificate for 127.0.0.1, the kind a
// public edge serves today.
func (m *material) serverCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: audience},
		DNSNames:     []string{audience},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	m.roots = x509.NewCertPool()
	m.roots.AddCert(cert)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	m.certFile = filepath.Join(m.dir, "server.crt")
	m.keyFile = filepath.Join(m.dir, "server.key")
	if err := os.WriteFile(m.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(m.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}

func writeJWKS(dir, name, kid string, pub crypto.PublicKey) (string, error) {
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	var jwk map[string]string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		jwk = map[string]string{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		ecdh, err := k.ECDH()
		if err != nil {
			return "", err
		}
		raw := ecdh.Bytes() // 0x04 || X || Y
		jwk = map[string]string{"kty": "EC", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	default:
		return "", fmt.Errorf("unsupported key %T", pub)
	}
	jwk["kid"] = kid
	jwk["use"] = "sig"
	b, err := json.Marshal(map[string]any{"keys": []any{jwk}})
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, b, 0o600)
}
