package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/internal/testutil"
)

type tokenCreds string

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(c)}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return true }

func TestDevelopmentMode(t *testing.T) {
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr testutil.SyncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"-data", data, "-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0"}, &stderr)
	}()
	addr := ""
	serving := regexp.MustCompile(`serving gRPC on (\S+),`)
	for deadline := time.Now().Add(60 * time.Second); addr == ""; {
		if m := serving.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case code := <-exit:
			t.Fatalf("exited with %d:\n%s", code, stderr.String())
		case <-time.After(20 * time.Millisecond): // polling the daemon's output
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 60s:\n%s", stderr.String())
		}
	}

	caPEM, err := os.ReadFile(filepath.Join(data, "tls", "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	call := func(tokenFile string) error {
		tok, err := os.ReadFile(filepath.Join(data, tokenFile))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(stderr.String(), strings.TrimSpace(string(tok))) {
			t.Fatalf("the output shows the value of %s", tokenFile)
		}
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})),
			grpc.WithPerRPCCredentials(tokenCreds(strings.TrimSpace(string(tok)))))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		_, err = cpv1.NewResourcesClient(conn).Status(cctx, &cpv1.StatusRequest{})
		return err
	}
	if err := call("admin.token"); err != nil {
		t.Fatalf("the admin token does not work: %v", err)
	}
	if err := call("proxy.token"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("the proxy token on the admin API: %v", err)
	}
	if out := stderr.String(); !strings.Contains(out, filepath.Join(data, "admin.token")) || !strings.Contains(out, "Development mode") {
		t.Fatalf("the banner does not name the token file:\n%s", out)
	}

	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d after SIGTERM-like cancel:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop within 30s")
	}
}

func TestUsageAndConfigErrorsExit2(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "cp.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: controlplane.portcullis.dev/v1alpha1\nlisten: [1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-nope"}, "flag provided but not defined"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-config", bad, "-data", t.TempDir()}, "cp.yaml:2:"},
		{[]string{"-log-level", "loud", "-data", t.TempDir()}, "-log-level"},
	} {
		var stderr testutil.SyncBuffer
		if code := run(context.Background(), tc.args, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
