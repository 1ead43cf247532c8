// Package demo is the embedded default that the ingress and the quickstart serve
// when started without a config: two echo backends on loopback, a self-signed
// certificate for localhost, and the resources that put them behind HTTPS on
// 127.0.0.1:8443 (HTTP on 127.0.0.1:8080 redirecting there).
//
// It is not for production: the certificate is self-signed and the backends echo
// what they receive.
package demo

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

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// Demo is a prepared demo: its backends run until Stop.
type Demo struct {
	// Config is the demo's resources as YAML documents (namespace default).
	Config []byte
	// Backends are the echo backends' addresses.
	Backends []string
	// GRPC is the gRPC backend's address (the standard health service, with
	// server reflection), exposed as REST/JSON, gRPC-Web and gRPC.
	GRPC string
	Stop func()
}

// Start starts two demo backends on loopback and makes a self-signed certificate
// for localhost under dir; Config refers to it.
func Start(dir string) (*Demo, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := selfSigned(certFile, keyFile); err != nil {
		return nil, err
	}
	d := &Demo{}
	var stops []func()
	d.Stop = func() {
		for _, s := range stops {
			s()
		}
	}
	for i := 1; i <= 2; i++ {
		addr, stop, err := backend(fmt.Sprintf("demo-backend-%d", i))
		if err != nil {
			d.Stop()
			return nil, err
		}
		stops = append(stops, stop)
		d.Backends = append(d.Backends, addr)
	}
	grpcAddr, stop, err := grpcBackend()
	if err != nil {
		d.Stop()
		return nil, err
	}
	stops = append(stops, stop)
	d.GRPC = grpcAddr
	rules := filepath.Join(dir, "health-rules.yaml")
	if err := os.WriteFile(rules, []byte(healthRules), 0o600); err != nil {
		d.Stop()
		return nil, err
	}
	d.Config = []byte(fmt.Sprintf(demoConfig, certFile, keyFile, d.Backends[0], d.Backends[1], grpcAddr, rules))
	return d, nil
}

// Try is the list of commands that show the demo working, for a start-up message.
const Try = `  curl -k https://localhost:8443/api/hello          # load balanced over both backends
  curl -k --http2 -v https://localhost:8443/api/x     # HTTP/2
  curl -i http://127.0.0.1:8080/api/hello             # 301 to https
  curl -k https://localhost:8443/status               # direct response, no backend
  curl -k https://localhost:8443/v1/health/demo       # a gRPC service as REST/JSON
  curl -k -N https://localhost:8443/v1/health/demo:watch   # its server stream, as NDJSON
  curl -s http://127.0.0.1:9901/metrics | grep portcullis_  # metrics
  curl -s http://127.0.0.1:9901/config                # running config, secrets redacted
`

// Files starts the demo and writes its config to a file under dataDir/demo, for a
// proxy that reads its config from files (gateway.Demo).
func Files(dataDir string, log *slog.Logger) ([]string, string, func(), error) {
	dir := filepath.Join(dataDir, "demo")
	d, err := Start(dir)
	if err != nil {
		return nil, "", nil, err
	}
	path := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(path, d.Config, 0o600); err != nil {
		d.Stop()
		return nil, "", nil, err
	}
	msg := fmt.Sprintf(`
Portcullis ingress demo: two demo backends (%s, %s) behind
  https://localhost:8443  (TLS with a self-signed certificate for localhost)
  http://127.0.0.1:8080   (redirects to https)

Try:
%s
Config: %s (edit it: the ingress reloads on change or SIGHUP)
`, d.Backends[0], d.Backends[1], Try, path)
	return []string{path}, msg, d.Stop, nil
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
kind: Cluster
metadata: {name: grpc-demo}
spec:
  protocol: H2C
  endpoints:
    - address: %s
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
    - name: grpc-as-rest
      match: {path: {prefix: /v1/health}}
      filters:
        - type: transcode
          config:
            reflection: {}
            httpRulesFile: %q
            services: [grpc.health.v1.Health]
            cluster: grpc-demo
      forward:
        backends: [{cluster: grpc-demo}]
        timeout: 10m
    - name: grpc
      match: {path: {prefix: /grpc.health.v1.Health/}}
      filters:
        - type: grpcweb
          config: {cluster: grpc-demo}
      forward:
        backends: [{cluster: grpc-demo}]
        timeout: 10m
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

// backend is an echo server: it answers with what it received, as JSON.
func backend(name string) (string, func(), error) {
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

// healthRules maps the gRPC health service, which has no HTTP annotations, to
// REST paths (a google.api.Service rule file; docs/translate.md).
const healthRules = `type: google.api.Service
config_version: 3
http:
  rules:
    - selector: grpc.health.v1.Health.Check
      get: /v1/health/{service}
    - selector: grpc.health.v1.Health.Watch
      get: /v1/health/{service}:watch
`

// grpcBackend serves the standard gRPC health service (service "demo" is
// SERVING) and server reflection in clear text (h2c) on loopback.
func grpcBackend() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hs := health.NewServer()
	hs.SetServingStatus("demo", healthpb.HealthCheckResponse_SERVING)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	go srv.Serve(ln)
	return ln.Addr().String(), srv.Stop, nil
}
