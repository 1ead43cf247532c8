package snapshot_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/snapshot"
)

// sidecall is a test filter that answers every request by sending it to cluster
// "side" through Build.Upstreams, as transcode and grpcweb do.
func init() {
	filter.Register("test-sidecall", func(b filter.Build) (filter.Filter, error) {
		up, ok := b.Upstreams.Upstream("side")
		if !ok {
			return nil, fmt.Errorf("no cluster side")
		}
		return filter.Func(func(w http.ResponseWriter, r *http.Request, _ filter.Handler) error {
			return up.ServeHTTP(w, r)
		}), nil
	})
}

// TestFilterUpstreamCallsUseTheRuleTimeout: a filter's calls through
// Build.Upstreams are bounded by the rule's forward.timeout, so a streaming
// route's long timeout covers the streams a filter opens, and a short one cuts a
// slow side call.
func TestFilterUpstreamCallsUseTheRuleTimeout(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
			w.Write([]byte("late"))
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	for _, c := range []struct {
		timeout string
		status  int
	}{{"200ms", http.StatusGatewayTimeout}, {"10s", http.StatusOK}} {
		doc := fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: pub}
spec: {address: 127.0.0.1:0}
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: side}
spec: {endpoints: [{address: %q}]}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - filters: [{type: test-sidecall}]
      forward: {backends: [{cluster: side}], timeout: %s}
`, slow.Listener.Addr().String(), c.timeout)
		set, err := config.Parse("t.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		snap, err := snapshot.Compile(set, "v1", nil, snapshot.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		snap.Start(nil)
		rec := httptest.NewRecorder()
		start := time.Now()
		snap.Acquire()
		snap.Serve("default/pub", rec, httptest.NewRequest(http.MethodGet, "http://x/", nil))
		snap.Release()
		took := time.Since(start)
		snap.Close()
		if rec.Code != c.status {
			t.Errorf("timeout %s: status %d (%q) after %v, want %d", c.timeout, rec.Code, strings.TrimSpace(rec.Body.String()), took, c.status)
		}
		if c.status == http.StatusGatewayTimeout && took > time.Second {
			t.Errorf("timeout %s: the side call took %v", c.timeout, took)
		}
	}
}
