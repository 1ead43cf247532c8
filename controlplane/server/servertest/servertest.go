// Package servertest starts a real control plane for tests: an embedded store, TLS
// on loopback with a throw-away CA, API tokens for a few roles, a proxy token and
// client certificates. It is for tests of the control plane and of its clients
// (portctl), not for production code.
package servertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/server"
)

// Principals the test config binds, by the name of their token file.
const (
	Admin      = "admin"       // token:admin, role admin (everything)
	ShopEditor = "shop-editor" // token:shop-editor, read and write in namespace shop only
	Reader     = "reader"      // token:reader, read every config kind everywhere, status
	Nobody     = "nobody"      // token:nobody, bound to no role
	Proxy      = "proxy"       // proxy:ingress-shop, an ingress bootstrap token for namespace shop
	// DeployerURI is the URI SAN of the admin client certificate.
	DeployerURI = "spiffe://portcullis.test/deployer"
	// OIDCUser is bound to role reader ("user:<OIDCUser>").
	OIDCUser = "jane.doe@example.com"
)

// Env is a running control plane.
type Env struct {
	Server   *server.Server
	GRPCAddr string
	HTTPAddr string
	// CAFile is the CA of the server certificate and of the client certificates.
	CAFile string
	// Tokens maps a principal constant (Admin, ...) to its token file.
	Tokens map[string]string
	// CertFile and KeyFile are a client certificate with URI SAN DeployerURI.
	CertFile, KeyFile string
	// UnboundCertFile and UnboundKeyFile: a valid client certificate named by its
	// CN "stranger" and bound to no role.
	UnboundCertFile, UnboundKeyFile string
	Config                          *server.Config
	ca                              *ca
}

// Options tune Start.
type Options struct {
	// OIDC, when set, is the identity provider's config.
	OIDC *server.OIDCConfig
	// Edit may change the config before the server starts.
	Edit func(*server.Config)
}

// Start runs a control plane until the test ends.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	dir := t.TempDir()
	c := newCA(t)
	env := &Env{ca: c, Tokens: map[string]string{}, CAFile: filepath.Join(dir, "ca.crt")}
	writeFile(t, env.CAFile, c.certPEM)
	serverCert, serverKey := c.issue(t, dir, "server", "localhost", nil, true)
	env.CertFile, env.KeyFile = c.issue(t, dir, "deployer", "deployer", []string{DeployerURI}, false)
	env.UnboundCertFile, env.UnboundKeyFile = c.issue(t, dir, "stranger", "stranger", nil, false)

	cfg := &server.Config{
		APIVersion: server.ConfigVersion,
		Name:       "replica-under-test",
		Listen:     "127.0.0.1:0",
		HTTPListen: "127.0.0.1:0",
		TLS:        server.TLSConfig{CertFile: serverCert, KeyFile: serverKey, ClientCAFile: env.CAFile},
		Store:      server.StoreConfig{Embedded: &server.EmbeddedStoreConfig{Dir: filepath.Join(dir, "store")}},
		OIDC:       opts.OIDC,
		Roles: []server.RoleConfig{
			{Name: "admin", Rules: []server.RuleConfig{{Namespaces: []string{"*"}, Kinds: []string{"*"}, Verbs: []string{"read", "write"}}}},
			{Name: "shop-editor", Rules: []server.RuleConfig{{Namespaces: []string{"shop"}, Kinds: []string{"*"}, Verbs: []string{"read", "write"}}}},
			{Name: "reader", Rules: []server.RuleConfig{{Namespaces: []string{"*"},
				Kinds: []string{"routes", "resilience", "policies", "telemetry", "workloads", "status"}, Verbs: []string{"read"}}}},
		},
		Bindings: []server.BindingConfig{
			{Role: "admin", Principals: []string{"token:admin", "cert:" + DeployerURI}},
			{Role: "shop-editor", Principals: []string{"token:shop-editor"}},
			{Role: "reader", Principals: []string{"token:reader", "user:" + OIDCUser}},
		},
	}
	for _, name := range []string{Admin, ShopEditor, Reader, Nobody, Proxy} {
		tok, err := auth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, name+".token")
		writeFile(t, file, []byte(tok+"\n"))
		env.Tokens[name] = file
		if name == Proxy {
			cfg.ProxyTokens = append(cfg.ProxyTokens, server.ProxyTokenConfig{
				Name: "ingress-shop", SHA256: auth.TokenDigest(tok), Role: "ingress", Namespace: "shop", ProxyName: "*"})
		} else {
			cfg.APITokens = append(cfg.APITokens, server.APITokenConfig{Name: name, SHA256: auth.TokenDigest(tok)})
		}
	}
	if opts.Edit != nil {
		opts.Edit(cfg)
	}
	env.Config = cfg
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := server.New(ctx, server.Options{Config: cfg, DataDir: dir})
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("control plane stopped with: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("control plane did not stop within 30s")
		}
	})
	env.Server, env.GRPCAddr, env.HTTPAddr = srv, srv.GRPCAddr(), srv.HTTPAddr()
	return env
}

// Token returns the token of a principal constant.
func (e *Env) Token(t testing.TB, who string) string {
	t.Helper()
	b, err := os.ReadFile(e.Tokens[who])
	if err != nil {
		t.Fatal(err)
	}
	return string(trimNL(b))
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// TLSConfig is a client TLS config trusting the server; with a certificate when
// certFile is not empty.
func (e *Env) TLSConfig(t testing.TB, certFile, keyFile string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.ca.certPEM)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// Client dials the admin API with a bearer token ("" for none) and an optional
// client certificate.
func (e *Env) Client(t testing.TB, token, certFile, keyFile string) cpv1.ResourcesClient {
	t.Helper()
	return cpv1.NewResourcesClient(e.Conn(t, token, certFile, keyFile))
}

// Conn dials the gRPC port (every service) with a bearer token ("" for none) and
// an optional client certificate; it is closed when the test ends.
func (e *Env) Conn(t testing.TB, token, certFile, keyFile string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(e.TLSConfig(t, certFile, keyFile)))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	conn, err := grpc.NewClient(e.GRPCAddr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// As dials with the token of a principal constant.
func (e *Env) As(t testing.TB, who string) cpv1.ResourcesClient {
	return e.Client(t, e.Token(t, who), "", "")
}

// HTTPClient is a client of the HTTP API trusting the server (no credentials:
// send a bearer token in each request, or pass a certificate).
func (e *Env) HTTPClient(t testing.TB, certFile, keyFile string) *http.Client {
	tr := &http.Transport{TLSClientConfig: e.TLSConfig(t, certFile, keyFile), ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// ca is a throw-away certificate authority.
type ca struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newCA(t testing.TB) *ca {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "servertest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate and key under dir (server: for 127.0.0.1 and
// localhost; else a client certificate) and returns their paths.
func (c *ca) issue(t testing.TB, dir, name, cn string, uris []string, serverAuth bool) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if serverAuth {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

func writeFile(t testing.TB, path string, b []byte) {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
