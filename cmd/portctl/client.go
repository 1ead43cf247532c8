package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
)

// bearer sends a token with every call; gRPC refuses to send it without TLS.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// connect dials the control plane with the global flags' credentials.
func (a *app) connect() (cpv1.ResourcesClient, func(), error) {
	g := a.g
	if g.server == "" {
		return nil, nil, usagef("--server is required")
	}
	if (g.cert == "") != (g.key == "") {
		return nil, nil, usagef("--cert and --key go together")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if g.ca != "" {
		b, err := os.ReadFile(g.ca)
		if err != nil {
			return nil, nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, nil, fmt.Errorf("--ca: %s holds no PEM certificate", g.ca)
		}
		tc.RootCAs = pool
	}
	if g.cert != "" {
		pair, err := tls.LoadX509KeyPair(g.cert, g.key)
		if err != nil {
			return nil, nil, fmt.Errorf("--cert/--key: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return nil, nil, fmt.Errorf("--token-file: %s is empty", g.tokenFile)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(tok)))
	}
	conn, err := grpc.NewClient(g.server, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("--server %q: %w", g.server, err)
	}
	return cpv1.NewResourcesClient(conn), func() { conn.Close() }, nil
}

// call runs f with a client and the per-call timeout.
func (a *app) call(ctx context.Context, f func(ctx context.Context, c cpv1.ResourcesClient) error) error {
	c, closeConn, err := a.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, a.g.timeout)
	defer cancel()
	return f(ctx, c)
}
