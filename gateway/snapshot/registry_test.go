package snapshot_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/snapshot"
)

// registryConfig is a listener and a route to a Cluster with registry
// discovery; endpoints is what the control plane filled in ("" for a file,
// which has none).
func registryConfig(endpoints string) string {
	return `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: pub, namespace: shop}
spec:
  address: 127.0.0.1:0
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: web, namespace: shop}
spec:
  listeners: [pub]
  rules:
    - forward: {backends: [{cluster: cart}]}
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: cart, namespace: shop}
spec:
  registry: {service: cart}
` + endpoints
}

// A proxy run from files has nobody to fill in a registry cluster's endpoints:
// it refuses the config, naming the file, line, cluster and field.
func TestRegistryClusterFromFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shop.yaml")
	if err := os.WriteFile(path, []byte(registryConfig("")), 0o600); err != nil {
		t.Fatal(err)
	}
	set, _, err := config.LoadFiles(path)
	if err != nil {
		t.Fatalf("the file form is valid config (the control plane stores it): %v", err)
	}
	snap, err := snapshot.Compile(set, "v1", nil, snapshot.Deps{})
	if err == nil {
		snap.Close()
		t.Fatal("a registry cluster compiled without the control plane")
	}
	for _, want := range []string{path + ":19:", "Cluster shop/cart", "spec.registry", `service "cart"`, "needs the control plane", "list endpoints, or use dns"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\n does not say %q", err, want)
		}
	}
}

// Pushed by the control plane, a registry cluster serves the endpoints filled
// in; with none (no healthy endpoint) it compiles and answers 503.
func TestPushedRegistryCluster(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "cart")
	}))
	defer backend.Close()

	cases := []struct {
		name      string
		endpoints string
		status    int
		body      string
	}{
		{"healthy endpoint", fmt.Sprintf("  endpoints: [{address: %q, weight: 2}]\n", backend.Listener.Addr().String()), http.StatusOK, "cart"},
		{"none healthy, written empty", "  endpoints: []\n", http.StatusServiceUnavailable, "no_healthy_upstream"},
		{"none healthy, left out", "", http.StatusServiceUnavailable, "no_healthy_upstream"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set, err := config.Parse("control-plane", []byte(registryConfig(c.endpoints)))
			if err != nil {
				t.Fatal(err)
			}
			snap, err := snapshot.Compile(set, "v1", nil, snapshot.Deps{FromControlPlane: true})
			if err != nil {
				t.Fatal(err)
			}
			snap.Start(nil)
			defer snap.Close()
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "http://shop.example/items", nil)
			snap.Acquire()
			snap.Serve("shop/pub", rec, req)
			snap.Release()
			if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.body) {
				t.Errorf("got %d %q, want %d with %q", rec.Code, rec.Body, c.status, c.body)
			}
		})
	}
}
