package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portcullis/portcullis/controlplane/auth"
)

// DevFiles are the files development mode keeps under -data. Their paths are
// printed at start; the tokens' values never are.
type DevFiles struct {
	CertFile, KeyFile string // the self-signed server certificate: also portctl's --ca
	AdminToken        string // bound to role admin ("token:admin")
	ProxyToken        string // an ingress bootstrap token for namespace default, any name
}

// DevConfig prepares development mode under dataDir: a self-signed certificate for
// localhost, an admin token and a proxy bootstrap token (each created once and
// reused on later starts), and a config that listens on 127.0.0.1 with an
// embedded store, a role "admin" allowed everything, bound to the admin token.
func DevConfig(dataDir string) (*Config, DevFiles, error) {
	files := DevFiles{
		CertFile:   filepath.Join(dataDir, "tls", "server.crt"),
		KeyFile:    filepath.Join(dataDir, "tls", "server.key"),
		AdminToken: filepath.Join(dataDir, "admin.token"),
		ProxyToken: filepath.Join(dataDir, "proxy.token"),
	}
	if err := ensureSelfSigned(files.CertFile, files.KeyFile); err != nil {
		return nil, files, err
	}
	adminDigest, err := ensureToken(files.AdminToken)
	if err != nil {
		return nil, files, err
	}
	proxyDigest, err := ensureToken(files.ProxyToken)
	if err != nil {
		return nil, files, err
	}
	c := &Config{
		APIVersion: ConfigVersion,
		Listen:     "127.0.0.1:9443",
		HTTPListen: "127.0.0.1:9444",
		TLS:        TLSConfig{CertFile: files.CertFile, KeyFile: files.KeyFile},
		Store:      StoreConfig{Embedded: &EmbeddedStoreConfig{Dir: filepath.Join(dataDir, "store")}},
		APITokens:  []APITokenConfig{{Name: "admin", SHA256: adminDigest}},
		ProxyTokens: []ProxyTokenConfig{{
			Name: "dev-ingress", SHA256: proxyDigest, Role: "ingress", Namespace: "default", ProxyName: "*",
		}},
		Roles: []RoleConfig{{Name: "admin", Rules: []RuleConfig{{
			Namespaces: []string{"*"}, Kinds: []string{"*"}, Verbs: []string{"read", "write"},
		}}}},
		Bindings: []BindingConfig{{Role: "admin", Principals: []string{"token:admin"}}},
	}
	return c, files, c.check()
}

// ensureToken reads the token in path, or writes a new one there (mode 0600),
// and returns its digest.
func ensureToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("%s is empty; delete it to have a new token made", path)
		}
		return auth.TokenDigest(tok), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	tok, err := auth.NewToken()
	if err != nil {
		return "", err
	}
	if err := writePrivate(path, []byte(tok+"\n")); err != nil {
		return "", err
	}
	return auth.TokenDigest(tok), nil
}

// ensureSelfSigned keeps a certificate that is still valid for more than a day,
// or writes a new one for localhost, 127.0.0.1 and ::1, valid for a year.
func ensureSelfSigned(certFile, keyFile string) error {
	if pair, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil && time.Until(pair.Leaf.NotAfter) > 24*time.Hour {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "portcullis control plane (development)"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root: clients trust it with --ca
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePrivate(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return err
	}
	return writePrivate(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// writePrivate writes a file only its owner can read, atomically.
func writePrivate(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
