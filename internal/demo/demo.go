package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// demo starts two demo backends on loopback, makes a self-signed certificate for
// localhost, and writes a config that serves them over HTTPS on 127.0.0.1:8443
// (with HTTP on 127.0.0.1:8080 redirecting there).
func demo(dataDir string, log *slog.Logger) ([]string, string, func(), error) {
	dir := filepath.Join(dataDir, "demo")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", nil, err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := selfSigned(certFile, keyFile); err != nil {
		return nil, "", nil, err
	}
	var stops []func()
	var addrs []string
	for i := 1; i <= 2; i++ {
		addr, stop, err := demoBackend(fmt.Sprintf("demo-backend-%d", i))
		if err != nil {
			return nil, "", nil, err
		}
		stops = append(stops, stop)
		addrs = append(addrs, addr)
	}
	cfg := fmt.Sprintf(demoConfig, certFile, keyFile, addrs[0], addrs[1])
	path := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, "", nil, err
	}
	msg := fmt.Sprintf(`
Portcullis ingress demo: two demo backends (%s, %s) behind
  https://localhost:8443  (TLS with a self-signed certificate for localhost)
  http://127.0.0.1:8080   (redirects to https)

Try:
  curl -k https://localhost:8443/api/hello          # load balanced over both backends
  curl -k --http2 -v https://localhost:8443/api/x     # HTTP/2
  curl -i http://127.0.0.1:8080/api/hello             # 301 to https
  curl -k https://localhost:8443/status               # direct response, no backend
  curl -s http://127.0.0.1:9901/metrics | grep portcullis_  # metrics
  curl -s http://127.0.0.1:9901/config                # running config, secrets redacted

Config: %s (edit it: the ingress reloads on change or SIGHUP)
`, addrs[0], addrs[1], path)
	return []string{path}, msg, func() {
		for _, s := range stops {
			s()
		}
	}, nil
}

const demoConfig = `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: https}
spec:
  address: 127.0.0.1:8443
  protocol: HTTPS
  tls:
    certificates: [{certFile: %q, keyFile: %q}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: http}
spec:
  address: 127.0.0.1:8080
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: demo}
spec:
  endpoints:
    - address: %s
    - address: %s
  loadBalancer: {policy: roundRobin}
  healthCheck: {path: /healthz, interval: 5s}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: to-https}
spec:
  listeners: [http]
  rules:
    - redirect: {scheme: https, port: 8443}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: api}
spec:
  listeners: [https]
  rules:
    - name: status
      match: {path: {exact: /status}}
      directResponse: {status: 200, body: "ok\n"}
    - name: api
      match: {path: {prefix: /api}}
      filters:
        - type: headers
          config:
            response: {set: {X-Served-By: portcullis-demo}}
      forward:
        backends: [{cluster: demo}]
        timeout: 10s
        retry: {attempts: 1}
---
apiVersion: portcullis.dev/v1alpha1
kind: Telemetry
metadata: {name: telemetry}
spec:
  accessLog: all
`

// demoBackend is an echo server: it answers with what it received, as JSON.
func demoBackend(name string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Write([]byte("ok"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"backend": name, "method": r.Method, "path": r.URL.Path, "proto": r.Proto,
			"host": r.Host, "x-forwarded-for": r.Header.Get("X-Forwarded-For"),
			"x-forwarded-proto": r.Header.Get("X-Forwarded-Proto"), "traceparent": r.Header.Get("Traceparent"),
		})
	})}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

// selfSigned writes a fresh ECDSA P-256 certificate for localhost and 127.0.0.1.
func selfSigned(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"Portcullis demo"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
}
