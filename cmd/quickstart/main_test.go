package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controlplane/server"
	"github.com/portcullis/portcullis/internal/testutil"
)

// TestQuickstart runs the README's first command end to end: the control plane
// comes up on its embedded store, the demo's resources go in through the admin API,
// the ingress gets them over the push stream and serves the demo; a change written
// through the admin API reaches the running ingress.
func TestQuickstart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := &testutil.SyncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-data", dir}, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				t.Errorf("quickstart: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("quickstart did not stop within 30s of its context ending")
		}
	})
	waitFor(t, "the banner", func() bool { return strings.Contains(out.String(), "Portcullis quickstart") })

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(url string) (int, http.Header, string) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, nil, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	if code, _, body := get("https://127.0.0.1:8443/status"); code != 200 || body != "ok\n" {
		t.Fatalf("GET /status through the ingress: %d %q", code, body)
	}
	code, hdr, body := get("https://127.0.0.1:8443/api/hello")
	if code != 200 || !strings.Contains(body, "demo-backend-") || hdr.Get("X-Served-By") != "portcullis-demo" {
		t.Fatalf("GET /api/hello: %d %v %q", code, hdr, body)
	}

	// The demo's gRPC service, as REST/JSON through the transcode filter.
	if code, _, body := get("https://127.0.0.1:8443/v1/health/demo"); code != 200 || strings.TrimSpace(body) != `{"status":"SERVING"}` {
		t.Fatalf("GET /v1/health/demo: %d %q", code, body)
	}

	// Change the route through the admin API, as portctl apply does.
	// DevConfig reuses the certificate and tokens the running control plane made.
	_, files, err := server.DevConfig(filepath.Join(dir, "controlplane"))
	if err != nil {
		t.Fatal(err)
	}
	tc, admin, _, err := credentials(files)
	if err != nil {
		t.Fatal(err)
	}
	route := `apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: api}
spec:
  listeners: [https]
  rules:
    - name: status
      match: {path: {exact: /status}}
      directResponse: {status: 200, body: "changed\n"}
`
	if err := apply(ctx, "127.0.0.1:9444", tc, admin, []byte(route)); err != nil {
		t.Fatalf("apply through the admin API: %v", err)
	}
	waitFor(t, "the change to reach the ingress", func() bool {
		_, _, body := get("https://127.0.0.1:8443/status")
		return body == "changed\n"
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
