package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway"
	_ "github.com/portcullis/portcullis/gateway/filters/all"
)

const header = "apiVersion: portcullis.dev/v1alpha1\n"

// listenerYAML is a plain HTTP listener on a free loopback port.
const listenerYAML = header + `kind: Listener
metadata: {name: pub}
spec:
  address: 127.0.0.1:0
`

func clusterYAML(name string, addrs ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\n%skind: Cluster\nmetadata: {name: %s}\nspec:\n  endpoints:\n", header, name)
	for _, a := range addrs {
		fmt.Fprintf(&b, "    - address: %s\n", a)
	}
	return b.String()
}

// echo is a backend that answers with what it saw, as JSON.
func echo(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "must not reach the client")
		json.NewEncoder(w).Encode(map[string]any{"name": name, "path": r.URL.Path, "query": r.URL.RawQuery, "host": r.Host, "headers": r.Header, "body": string(body)})
	}))
	t.Cleanup(s.Close)
	return s
}

type seen struct {
	Name    string
	Path    string
	Query   string
	Host    string
	Headers http.Header
	Body    string
}

// start runs a gateway on the given config and returns it with the base URL of
// listener "default/pub".
func start(t *testing.T, cfg string) (*gateway.Gateway, string, string) {
	t.Helper()
	g, base, path := startTB(t, cfg)
	t.Cleanup(func() { g.Shutdown() })
	return g, base, path
}

func startB(b *testing.B, cfg string) (*gateway.Gateway, string) {
	g, base, _ := startTB(b, cfg)
	return g, base
}

func startTB(t testing.TB, cfg string) (*gateway.Gateway, string, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Role: gateway.RoleIngress, ConfigPaths: []string{path}, AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewJSONHandler(testLogSink(), &slog.HandlerOptions{Level: slog.LevelDebug})), PollInterval: -1, ShutdownGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	return g, "http://" + g.ListenerAddr("default/pub"), path
}

func get(t *testing.T, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func mustReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestForwardingHeaders(t *testing.T) {
	be := echo(t, "a")
	_, base, _ := start(t, listenerYAML+clusterYAML("be", be.Listener.Addr().String())+`---
`+header+`kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - match: {path: {prefix: /}}
      forward: {backends: [{cluster: be}]}
`)
	req := mustReq(t, "GET", base+"/a/b?x=1", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // a lie from an untrusted client
	req.Header.Set("Forwarded", "for=6.6.6.6")   // likewise
	req.Header.Set("Connection", "keep-alive, X-Secret")
	req.Header.Set("X-Secret", "hop-by-hop by Connection")
	req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
	resp, body := get(t, nil, req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var s seen
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if s.Path != "/a/b" || s.Query != "x=1" {
		t.Errorf("upstream saw path %q query %q", s.Path, s.Query)
	}
	if got := s.Headers.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the peer only (client value replaced)", got)
	}
	if got := s.Headers.Get("Forwarded"); got != "" {
		t.Errorf("Forwarded from an untrusted client reached upstream: %q", got)
	}
	if s.Headers.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("X-Forwarded-Proto = %q", s.Headers.Get("X-Forwarded-Proto"))
	}
	for _, h := range []string{"X-Secret", "Proxy-Authorization", "Connection"} {
		if v := s.Headers.Get(h); v != "" {
			t.Errorf("hop-by-hop %s reached upstream: %q", h, v)
		}
	}
	if v := resp.Header.Get("X-Hop"); v != "" {
		t.Errorf("response hop-by-hop X-Hop reached client: %q", v)
	}
	if !strings.HasPrefix(s.Headers.Get("Traceparent"), "00-") {
		t.Errorf("no traceparent sent upstream: %q", s.Headers.Get("Traceparent"))
	}
}

func TestRoutingActions(t *testing.T) {
	a, b := echo(t, "a"), echo(t, "b")
	_, base, _ := start(t, listenerYAML+clusterYAML("a", a.Listener.Addr().String())+clusterYAML("b", b.Listener.Addr().String())+`---
`+header+`kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - match: {path: {exact: /status}}
      directResponse: {status: 200, body: "up\n", headers: {X-Direct: "1"}}
    - match: {path: {prefix: /old}}
      redirect: {prefix: /new, status: 308}
    - match: {path: {prefix: /b}, headers: [{name: X-Canary, exact: "yes"}]}
      forward: {backends: [{cluster: b}]}
    - match: {path: {prefix: /v1}}
      forward:
        backends: [{cluster: a}]
        rewrite: {prefix: /api/v1, host: internal.example}
    - match: {path: {template: "/users/{id}"}, methods: [GET]}
      forward: {backends: [{cluster: b}]}
    - match: {path: {prefix: /}}
      forward: {backends: [{cluster: a}]}
`)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cases := []struct {
		name       string
		method     string
		path       string
		hdr        map[string]string
		wantStatus int
		wantName   string
		wantPath   string
		check      func(t *testing.T, resp *http.Response, body []byte, s seen)
	}{
		{name: "direct", method: "GET", path: "/status", wantStatus: 200, check: func(t *testing.T, resp *http.Response, body []byte, _ seen) {
			if string(body) != "up\n" || resp.Header.Get("X-Direct") != "1" {
				t.Errorf("direct response %q %v", body, resp.Header)
			}
		}},
		{name: "redirect keeps the rest of the path and query", method: "GET", path: "/old/x?q=1", wantStatus: 308, check: func(t *testing.T, resp *http.Response, _ []byte, _ seen) {
			if loc := resp.Header.Get("Location"); !strings.HasSuffix(loc, "/new/x?q=1") {
				t.Errorf("Location %q", loc)
			}
		}},
		{name: "header routing", method: "GET", path: "/b/1", hdr: map[string]string{"X-Canary": "yes"}, wantStatus: 200, wantName: "b", wantPath: "/b/1"},
		{name: "header routing miss falls to default", method: "GET", path: "/b/1", wantStatus: 200, wantName: "a", wantPath: "/b/1"},
		{name: "prefix and host rewrite", method: "GET", path: "/v1/things", wantStatus: 200, wantName: "a", wantPath: "/api/v1/things", check: func(t *testing.T, _ *http.Response, _ []byte, s seen) {
			if s.Host != "internal.example" {
				t.Errorf("Host %q", s.Host)
			}
		}},
		{name: "template", method: "GET", path: "/users/42", wantStatus: 200, wantName: "b", wantPath: "/users/42"},
		{name: "template wrong method falls through", method: "DELETE", path: "/users/42", wantStatus: 200, wantName: "a"},
		{name: "dot segments resolved before routing", method: "GET", path: "/x/../v1/y", wantStatus: 200, wantName: "a", wantPath: "/api/v1/y"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := mustReq(t, c.method, base+c.path, nil)
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			resp, body := get(t, noRedirect, req)
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.wantStatus, body)
			}
			var s seen
			if c.wantName != "" {
				if err := json.Unmarshal(body, &s); err != nil {
					t.Fatalf("%v: %s", err, body)
				}
				if s.Name != c.wantName {
					t.Errorf("served by %q, want %q", s.Name, c.wantName)
				}
				if c.wantPath != "" && s.Path != c.wantPath {
					t.Errorf("upstream path %q, want %q", s.Path, c.wantPath)
				}
			}
			if c.check != nil {
				c.check(t, resp, body, s)
			}
		})
	}
}

func TestWeightedSplit(t *testing.T) {
	a, b := echo(t, "a"), echo(t, "b")
	_, base, _ := start(t, listenerYAML+clusterYAML("a", a.Listener.Addr().String())+clusterYAML("b", b.Listener.Addr().String())+`---
`+header+`kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - forward: {backends: [{cluster: a, weight: 80}, {cluster: b, weight: 20}]}
`)
	const n = 1000
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		_, body := get(t, nil, mustReq(t, "GET", base+"/", nil))
		var s seen
		json.Unmarshal(body, &s)
		counts[s.Name]++
	}
	// 20% of 1000: binomial sd ~12.6; allow 4 sd.
	if counts["b"] < 150 || counts["b"] > 250 || counts["a"]+counts["b"] != n {
		t.Fatalf("split %v, want about 800/200", counts)
	}
}

func TestErrors(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := dead.Listener.Addr().String()
	dead.Close()
	a := echo(t, "a")
	g, base, _ := start(t, listenerYAML+clusterYAML("a", a.Listener.Addr().String())+clusterYAML("dead", deadAddr)+`---
`+header+`kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  hosts: [api.example.com]
  rules:
    - match: {path: {prefix: /dead}}
      forward: {backends: [{cluster: dead}]}
    - match: {path: {prefix: /small}}
      forward: {backends: [{cluster: a}], maxRequestBodyBytes: 10}
`)
	cases := []struct {
		name, host, path, body string
		chunked                bool
		want                   int
	}{
		{name: "no route for host", host: "other.example.com", path: "/small", want: 404},
		{name: "no route for path", host: "api.example.com", path: "/nothing", want: 404},
		{name: "upstream refuses connections", host: "api.example.com", path: "/dead", want: 503},
		{name: "body over the limit", host: "api.example.com", path: "/small", body: strings.Repeat("x", 11), want: 413},
		{name: "chunked body over the limit", host: "api.example.com", path: "/small", body: strings.Repeat("x", 100), chunked: true, want: 413},
		{name: "body at the limit", host: "api.example.com", path: "/small", body: strings.Repeat("x", 10), want: 200},
		{name: "escaped slash refused", host: "api.example.com", path: "/small/a%2Fb", want: 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
				if c.chunked {
					body = io.MultiReader(body) // hides the length: sent chunked
				}
			}
			req := mustReq(t, "POST", base+c.path, body)
			req.Host = c.host
			resp, b := get(t, nil, req)
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, b)
			}
		})
	}
	// Every error the proxy answered itself is counted by its reason.
	_, metrics := get(t, nil, mustReq(t, "GET", "http://"+g.AdminAddr()+"/metrics", nil))
	for _, want := range []string{
		`portcullis_local_replies_total{listener="default/pub",reason="no_route",role="ingress",route=""} 2`,
		`portcullis_local_replies_total{listener="default/pub",reason="bad_path",role="ingress",route=""} 1`,
		`portcullis_local_replies_total{listener="default/pub",reason="body_too_large",role="ingress",route="default/r#1"} 2`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(string(metrics), "local_replies"))
		}
	}
}

func TestRetryMovesToAnotherEndpoint(t *testing.T) {
	var bad atomic.Int64
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad.Add(1)
		w.WriteHeader(503)
	}))
	defer failing.Close()
	good := echo(t, "good")
	_, base, _ := start(t, listenerYAML+clusterYAML("c", failing.Listener.Addr().String(), good.Listener.Addr().String())+`---
`+header+`kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - forward:
        backends: [{cluster: c}]
        retry: {attempts: 2, on: [gateway-error], backoffBase: 1ms, backoffMax: 2ms}
`)
	for i := 0; i < 20; i++ {
		resp, body := get(t, nil, mustReq(t, "GET", base+"/", nil))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d: %s", i, resp.StatusCode, body)
		}
	}
	if bad.Load() == 0 {
		t.Fatal("the failing endpoint was never tried: the test proves nothing")
	}
}

func TestReloadRefusesBadConfigAndKeepsServing(t *testing.T) {
	a := echo(t, "a")
	good := listenerYAML + clusterYAML("a", a.Listener.Addr().String()) + `---
` + header + `kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - forward: {backends: [{cluster: a}]}
`
	g, base, path := start(t, good)
	bad := strings.Replace(good, "cluster: a}", "cluster: missing}", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	err := g.Reload()
	if err == nil {
		t.Fatal("a config with a dangling cluster reference was accepted")
	}
	if !strings.Contains(err.Error(), "config.yaml:") || !strings.Contains(err.Error(), `no Cluster "missing"`) {
		t.Fatalf("error does not name the file, line and reason: %v", err)
	}
	resp, body := get(t, nil, mustReq(t, "GET", base+"/", nil))
	if resp.StatusCode != 200 {
		t.Fatalf("after a refused reload: status %d: %s", resp.StatusCode, body)
	}
	_, metrics := get(t, nil, mustReq(t, "GET", "http://"+g.AdminAddr()+"/metrics", nil))
	if !strings.Contains(string(metrics), `outcome="refused"`) {
		t.Fatalf("refused reload not counted in metrics:\n%s", grep(string(metrics), "reload"))
	}
}

func TestReloadUnderLoadFailsNoRequest(t *testing.T) {
	a := echo(t, "a")
	cfg := func(body string) string {
		return listenerYAML + clusterYAML("a", a.Listener.Addr().String()) + `---
` + header + `kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - match: {path: {exact: /v}}
      directResponse: {status: 200, body: "` + body + `"}
    - forward: {backends: [{cluster: a}]}
`
	}
	g, base, path := start(t, cfg("v0"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var failures, total atomic.Int64
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				resp, err := http.Get(base + "/")
				total.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	for i := 1; i <= 10; i++ {
		if err := os.WriteFile(path, []byte(cfg(fmt.Sprintf("v%d", i))), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := g.Reload(); err != nil {
			t.Fatal(err)
		}
		_, body := get(t, nil, mustReq(t, "GET", base+"/v", nil))
		if string(body) != fmt.Sprintf("v%d", i) {
			t.Fatalf("after reload %d the direct response is %q", i, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || total.Load() == 0 {
		t.Fatalf("%d of %d requests failed across 10 reloads", failures.Load(), total.Load())
	}
}

func TestAdminEndpoints(t *testing.T) {
	a := echo(t, "a")
	g, base, _ := start(t, listenerYAML+clusterYAML("a", a.Listener.Addr().String())+`---
`+header+`kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - filters:
        - type: headers
          config: {request: {set: {Authorization: "Bearer top-secret-token"}}}
      forward: {backends: [{cluster: a}]}
`)
	get(t, nil, mustReq(t, "GET", base+"/x", nil))
	admin := "http://" + g.AdminAddr()
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp, body := get(t, nil, mustReq(t, "GET", admin+p, nil)); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
	_, cfg := get(t, nil, mustReq(t, "GET", admin+"/config", nil))
	if strings.Contains(string(cfg), "top-secret-token") {
		t.Errorf("/config shows a secret:\n%s", cfg)
	}
	if !strings.Contains(string(cfg), `"version"`) || !strings.Contains(string(cfg), "Route") {
		t.Errorf("/config lacks the config:\n%s", cfg)
	}
	_, metrics := get(t, nil, mustReq(t, "GET", admin+"/metrics", nil))
	m := string(metrics)
	for _, want := range []string{
		`route="default/r#0"`,
		`portcullis_upstream_circuit_breaker_limit{cluster="default/a",limit="maxRequests",role="ingress"} 1024`,
		`portcullis_upstream_endpoint_in_flight{cluster="default/a",endpoint="` + a.Listener.Addr().String() + `",role="ingress"} 0`,
		`portcullis_config_info{`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "portcullis_"))
		}
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func testLogSink() io.Writer {
	if os.Getenv("PORTCULLIS_TEST_LOGS") != "" {
		return os.Stderr
	}
	return io.Discard
}
