package all_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	_ "github.com/portcullis/portcullis/gateway/filters/all"
	"github.com/portcullis/portcullis/gateway/snapshot"
)

func TestEveryFilterIsRegistered(t *testing.T) {
	for _, typ := range []string{"authz", "cors", "credexchange", "fault", "grpcweb", "headers", "jwks", "jwt", "mirror", "oidc", "ratelimit", "restbridge", "tokenmint", "transcode"} {
		if _, ok := filter.Lookup(typ); !ok {
			t.Errorf("filter type %q is not registered by package all (have %v)", typ, filter.Types())
		}
	}
	if got := filter.Types(); !slices.IsSorted(got) || len(got) < 3 {
		t.Errorf("filter.Types() = %v", got)
	}
}

// routeDoc is a config with a backend and a shadow cluster at the given addresses and
// one Route; faultConfig is the config of the first rule's filter.
func routeDoc(backend, shadow, faultType, faultConfig string) string {
	return fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: public}
spec: {address: 127.0.0.1:18080}
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: backend}
spec:
  endpoints: [{address: %s}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: shadow-v2}
spec:
  endpoints: [{address: %s}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
  listeners: [public]
  rules:
    - match: {path: {prefix: /fault}}
      filters:
        - type: %s
          config: %s
      forward: {backends: [{cluster: backend}]}
    - filters:
        - type: headers
          config:
            request: {set: {X-Client: "%%{client_ip}"}}
            response: {remove: [Server]}
        - type: mirror
          config: {cluster: shadow-v2}
      forward: {backends: [{cluster: backend}]}
`, backend, shadow, faultType, faultConfig)
}

// TestThroughTheCore compiles the filters with the real snapshot compiler and
// serves requests through it to real upstream servers: the filters meet the core's
// forwarder, error answers and error positions.
func TestThroughTheCore(t *testing.T) {
	shadowGot := make(chan string, 10)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Server", "leaky/1.0")
		fmt.Fprintf(w, "host=%s xff=%s client=%s body=%s", r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Client"), b)
	}))
	defer backend.Close()
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		shadowGot <- fmt.Sprintf("host=%s xff=%s client=%s body=%s", r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Client"), b)
	}))
	defer shadow.Close()
	addr := func(s *httptest.Server) string { return s.Listener.Addr().String() }

	set, err := config.Parse("e2e.yaml", []byte(routeDoc(addr(backend), addr(shadow), "fault", "{abort: {status: 503, grpcStatus: 14}, header: x-fault}")))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Compile(set, "v1", nil, snapshot.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	snap.Start(nil)
	defer snap.Close()
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		snap.Acquire()
		defer snap.Release()
		snap.Serve("default/public", rec, r)
		return rec
	}

	t.Run("headers and mirror", func(t *testing.T) {
		r := httptest.NewRequest("POST", "http://api.example.com/orders", strings.NewReader("hello"))
		r.RemoteAddr = "192.0.2.1:1234"
		rec := serve(r)
		want := "host=api.example.com xff=192.0.2.1 client=192.0.2.1 body=hello"
		if rec.Code != 200 || rec.Body.String() != want || rec.Header().Get("Server") != "" {
			t.Errorf("primary: %d %v %q, want 200 without Server, %q", rec.Code, rec.Header(), rec.Body, want)
		}
		select {
		case got := <-shadowGot:
			if want := "host=api.example.com-shadow xff=192.0.2.1 client=192.0.2.1 body=hello"; got != want {
				t.Errorf("shadow got %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no shadow request arrived")
		}
	})
	t.Run("fault abort answered by the core", func(t *testing.T) {
		r := httptest.NewRequest("GET", "http://api.example.com/fault", nil)
		r.Header.Set("X-Fault", "1")
		rec := serve(r)
		if rec.Code != 503 || !strings.Contains(rec.Body.String(), "fault_abort") {
			t.Errorf("got %d %q, want 503 fault_abort", rec.Code, rec.Body)
		}
	})
	t.Run("gRPC fault abort", func(t *testing.T) {
		r := httptest.NewRequest("POST", "http://api.example.com/fault", nil)
		r.Header.Set("X-Fault", "1")
		r.Header.Set("Content-Type", "application/grpc")
		rec := serve(r)
		if rec.Code != 200 || rec.Header().Get("Grpc-Status") != "14" {
			t.Errorf("got %d %v, want 200 grpc-status 14", rec.Code, rec.Header())
		}
	})

	// Errors of a filter's config reach the user with file, line and field path.
	configLine := 0
	for i, l := range strings.Split(routeDoc("a", "b", "x", "y"), "\n") {
		if strings.Contains(l, "config: y") {
			configLine = i + 1
			break
		}
	}
	errs := []struct{ typ, cfg, want string }{
		{"fault", "{abort: {status: 42}, delay: {duration: 1s, percent: 200}}",
			fmt.Sprintf("e2e.yaml:%d:11: Route default/r: spec.rules[0].filters[0].config: delay.percent: 200 is not a percentage (0 to 100); abort.status: 42", configLine)},
		{"mirror", "{cluster: nope}", fmt.Sprintf(`e2e.yaml:%d:11: Route default/r: spec.rules[0].filters[0].config: cluster: no Cluster "nope"`, configLine)},
		{"headers", "{request: {set: {Connection: close}}}", fmt.Sprintf(`e2e.yaml:%d:11: Route default/r: spec.rules[0].filters[0].config: request.set.Connection:`, configLine)},
		{"fault", "{abrot: 1}", fmt.Sprintf(`e2e.yaml:%d:20: Route default/r: spec.rules[0].filters[0].config: unknown field "abrot"`, configLine)},
	}
	for _, e := range errs {
		t.Run("error "+e.typ+" "+e.cfg, func(t *testing.T) {
			set, err := config.Parse("e2e.yaml", []byte(routeDoc(addr(backend), addr(shadow), e.typ, e.cfg)))
			if err != nil {
				t.Fatal(err)
			}
			s, err := snapshot.Compile(set, "v2", nil, snapshot.Deps{})
			if err == nil {
				s.Close()
				t.Fatal("compiled")
			}
			if !strings.HasPrefix(err.Error(), e.want) {
				t.Errorf("error\n%s\nwant it to start with\n%s", err, e.want)
			}
		})
	}
}
