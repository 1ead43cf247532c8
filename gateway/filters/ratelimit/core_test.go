package ratelimit_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	_ "github.com/portcullis/portcullis/gateway/filters/cors"
	"github.com/portcullis/portcullis/gateway/snapshot"
)

// edgeDoc is an ingress route with the edge chain: cors first, then ratelimit keyed
// by client address behind a trusted proxy (10.0.0.0/8).
func edgeDoc(backend, dead string) string {
	return fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: public}
spec:
  address: 127.0.0.1:18080
  trustedProxies: [10.0.0.0/8]
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: backend}
spec:
  endpoints: [{address: %s}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: dead}
spec:
  endpoints: [{address: %s}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
  listeners: [public]
  rules:
    - match: {path: {prefix: /dead}}
      filters:
        - type: cors
          config: {allowedOrigins: ["https://app.example.com"]}
      forward: {backends: [{cluster: dead}]}
    - filters:
        - type: cors
          config:
            allowedOrigins: ["https://app.example.com"]
            exposedHeaders: [RateLimit-Remaining, Retry-After]
        - type: ratelimit
          config: {requestsPerSecond: 0.2, burst: 2}
      forward: {backends: [{cluster: backend}]}
`, backend, dead)
}

// TestEdgeChainThroughTheCore compiles cors and ratelimit with the real snapshot
// compiler and serves through it: the client address comes from X-Forwarded-For of
// a trusted peer, the 429 keeps its real Retry-After, and answers written by a
// later filter or by the core carry the CORS headers.
func TestEdgeChainThroughTheCore(t *testing.T) {
	var upstream atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream.Add(1)
		w.Header().Set("Access-Control-Allow-Origin", "*") // a service with its own, too wide, CORS
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := dead.Listener.Addr().String()
	dead.Close() // nothing listens there any more: the core answers 502/503

	set, err := config.Parse("edge.yaml", []byte(edgeDoc(backend.Listener.Addr().String(), deadAddr)))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Compile(set, "v1", nil, snapshot.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	snap.Start(nil)
	defer snap.Close()
	serve := func(method, path, peer, xff string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "http://api.example.com"+path, nil)
		r.RemoteAddr = peer
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		snap.Acquire()
		defer snap.Release()
		snap.Serve("default/public", rec, r)
		return rec
	}
	const origin = "https://app.example.com"

	t.Run("preflight ends at the gateway, before the rate limit", func(t *testing.T) {
		before := upstream.Load()
		for range 5 {
			rec := serve("OPTIONS", "/items", "10.0.0.1:1000", "198.51.100.9", "Origin", origin, "Access-Control-Request-Method", "POST")
			if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != origin || rec.Header().Get("Ratelimit-Limit") != "" {
				t.Fatalf("preflight: %d %v", rec.Code, rec.Header())
			}
		}
		if upstream.Load() != before {
			t.Error("a preflight reached the upstream")
		}
	})

	t.Run("burst, then 429 with the real Retry-After and CORS headers", func(t *testing.T) {
		for i := range 2 {
			rec := serve("GET", "/items", "10.0.0.1:1000", "198.51.100.1", "Origin", origin)
			if rec.Code != 200 || rec.Body.String() != "ok" || rec.Header().Get("Access-Control-Allow-Origin") != origin {
				t.Fatalf("request %d: %d %q %v", i+1, rec.Code, rec.Body, rec.Header())
			}
		}
		rec := serve("GET", "/items", "10.0.0.2:1000", "198.51.100.1", "Origin", origin)
		h := rec.Header()
		// 1/0.2 rps = 5s to the next token, less the (real) time the test took; the
		// core's own error answer would have said 1.
		if ra, _ := strconv.Atoi(h.Get("Retry-After")); ra < 2 || ra > 5 {
			t.Errorf("Retry-After %q, want the wait for the next token (up to 5s)", h.Get("Retry-After"))
		}
		if rec.Code != 429 || h.Get("Ratelimit-Limit") != "2" || h.Get("Ratelimit-Remaining") != "0" ||
			h.Get("Ratelimit-Reset") == "" || !strings.Contains(rec.Body.String(), "rate_limited") {
			t.Errorf("over the limit: %d %q %v", rec.Code, rec.Body, h)
		}
		if h.Get("Access-Control-Allow-Origin") != origin || h.Get("Access-Control-Expose-Headers") != "Ratelimit-Remaining, Retry-After" {
			t.Errorf("the 429 lacks CORS headers, so the page cannot read it: %v", h)
		}
	})

	t.Run("clients behind the trusted proxy have their own buckets", func(t *testing.T) {
		if rec := serve("GET", "/items", "10.0.0.1:1000", "198.51.100.2"); rec.Code != 200 {
			t.Errorf("another client behind the proxy: %d", rec.Code)
		}
		// An untrusted peer's X-Forwarded-For is ignored: its key is its own address.
		for i, want := range []int{200, 200, 429} {
			if rec := serve("GET", "/items", "203.0.113.1:1000", fmt.Sprintf("198.51.100.%d", 100+i)); rec.Code != want {
				t.Errorf("untrusted peer, request %d: %d, want %d", i+1, rec.Code, want)
			}
		}
	})

	t.Run("an error answered by the core carries CORS headers", func(t *testing.T) {
		rec := serve("GET", "/dead", "10.0.0.1:1000", "", "Origin", origin)
		if rec.Code < 500 || rec.Header().Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("got %d %v, want a 5xx with Access-Control-Allow-Origin", rec.Code, rec.Header())
		}
	})

	t.Run("config errors are positioned by the core", func(t *testing.T) {
		doc := strings.Replace(edgeDoc("127.0.0.1:1", "127.0.0.1:2"), "{requestsPerSecond: 0.2, burst: 2}", "{requestsPerSecond: 0.2, burst: 2, ipv6PrefixLength: 200}", 1)
		set, err := config.Parse("edge.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		s, err := snapshot.Compile(set, "v2", nil, snapshot.Deps{})
		if err == nil {
			s.Close()
			t.Fatal("compiled")
		}
		if want := "spec.rules[1].filters[1].config: ipv6PrefixLength: 200 is out of range"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	})
}
