// Command quickstart runs the whole suite on one machine with nothing to set up: a
// control plane on its embedded store (development mode: a self-signed
// certificate, an admin token and a proxy token under -data), the demo's resources
// applied through the control plane's admin API, and an ingress that receives its
// config from the control plane over the push stream and serves the demo. It
// prints what to curl and which portctl commands change the running config.
//
//	go run ./cmd/quickstart
//
// Everything listens on 127.0.0.1 only. Stop it with Ctrl-C; its data stays under
// -data, and the ingress starts from its last-known-good config next time even if
// the control plane does not come up.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/controlplane/server"
	"github.com/portcullis/portcullis/gateway"
	"github.com/portcullis/portcullis/gateway/cpclient"
	_ "github.com/portcullis/portcullis/gateway/filters/all"
	"github.com/portcullis/portcullis/internal/demo"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(out)
	dataDir := fs.String("data", "", "directory for the store, tokens, certificates and the ingress's state (default: under the user cache dir)")
	level := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: lv}))
	if *dataDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		*dataDir = filepath.Join(base, "portcullis", "quickstart")
	}
	cpDir, ingressDir := filepath.Join(*dataDir, "controlplane"), filepath.Join(*dataDir, "ingress")
	for _, d := range []string{cpDir, ingressDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}

	// The control plane, in development mode.
	cfg, files, err := server.DevConfig(cpDir)
	if err != nil {
		return fmt.Errorf("control plane: %w", err)
	}
	srv, err := server.New(ctx, server.Options{Config: cfg, DataDir: cpDir, Logger: log.With("component", "controlplane")})
	if err != nil {
		return fmt.Errorf("control plane: %w", err)
	}
	cpDone := make(chan error, 1)
	go func() { cpDone <- srv.Run(ctx) }()

	tlsConf, adminToken, proxyToken, err := credentials(files)
	if err != nil {
		return err
	}

	// The demo's backends, and its resources written through the admin API.
	d, err := demo.Start(filepath.Join(*dataDir, "demo"))
	if err != nil {
		return err
	}
	defer d.Stop()
	if err := apply(ctx, srv.HTTPAddr(), tlsConf, adminToken, d.Config); err != nil {
		return fmt.Errorf("applying the demo's resources: %w", err)
	}

	// The ingress, driven by the control plane.
	g, err := gateway.New(gateway.Options{Role: gateway.RoleIngress, Dynamic: true, AdminAddr: "127.0.0.1:9901", DataDir: ingressDir, Logger: log.With("component", "ingress")})
	if err != nil {
		return err
	}
	if err := g.Start(); err != nil {
		return err
	}
	host, _ := os.Hostname()
	go cpclient.Run(ctx, cpclient.Options{
		Addresses: []string{srv.GRPCAddr()}, TLS: tlsConf, Token: proxyToken,
		Role: gateway.RoleIngress, Namespace: "default", Name: "demo", Node: host,
		DataDir: ingressDir, Apply: g.Apply, Logger: log.With("component", "ingress"),
	})
	if err := waitReady(ctx, g); err != nil {
		return err
	}
	fmt.Fprintf(out, banner, srv.GRPCAddr(), cpDir, d.Backends[0], d.Backends[1], demo.Try,
		srv.GRPCAddr(), files.CertFile, files.AdminToken)

	runErr := g.Run(ctx) // until Ctrl-C
	if err := <-cpDone; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return runErr
}

const banner = `
Portcullis quickstart
  control plane  %s (embedded store under %s)
  ingress        driven by the control plane; demo backends %s, %s

Try:
%s
The ingress's config lives in the control plane. With portctl:
  alias portctl='go run ./cmd/portctl --server %s --ca %s --token-file %s'
  portctl status                    # which proxy runs which version
  portctl get Route -n default -o yaml
  portctl get Route api -n default -o yaml > api.yaml   # edit, then:
  portctl diff -f api.yaml && portctl apply -f api.yaml
  portctl audit                     # who changed what
`

// credentials reads what development mode wrote: the server's certificate (to
// trust) and the two tokens.
func credentials(files server.DevFiles) (*tls.Config, string, string, error) {
	pem, err := os.ReadFile(files.CertFile)
	if err != nil {
		return nil, "", "", err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, "", "", fmt.Errorf("%s: no certificate", files.CertFile)
	}
	admin, err := os.ReadFile(files.AdminToken)
	if err != nil {
		return nil, "", "", err
	}
	proxy, err := os.ReadFile(files.ProxyToken)
	if err != nil {
		return nil, "", "", err
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, strings.TrimSpace(string(admin)), strings.TrimSpace(string(proxy)), nil
}

// apply writes documents through the admin API, as portctl apply does, retrying
// while the control plane is still starting.
func apply(ctx context.Context, addr string, tc *tls.Config, token string, docs []byte) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/apply", bytes.NewReader(docs))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/yaml")
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
			if resp.StatusCode < 500 {
				return err
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func waitReady(ctx context.Context, g *gateway.Gateway) error {
	deadline := time.Now().Add(30 * time.Second)
	for !g.Ready() {
		if time.Now().After(deadline) {
			return errors.New("the ingress did not receive its config from the control plane within 30s (run with -log-level info to see why)")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
