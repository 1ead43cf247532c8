package transcode_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/portcullis/portcullis/gateway"
	_ "github.com/portcullis/portcullis/gateway/filters/transcode"
)

const apiHeader = "apiVersion: portcullis.dev/v1alpha1\n"

// healthRules exposes grpc.health.v1.Health, which has no annotations, through a
// rule file.
const healthRules = `type: google.api.Service
config_version: 3
http:
  rules:
    - selector: grpc.health.v1.Health.Check
      get: /v1/health/{service}
    - selector: grpc.health.v1.Health.Watch
      get: /v1/health/{service}:watch
`

// writeHealthFiles writes the health service's descriptor set (built from the
// descriptor linked into grpc-go, as a deployment would ship it) and the rules.
func writeHealthFiles(t *testing.T) (set, rules string) {
	t.Helper()
	dir := t.TempDir()
	fds := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(healthpb.File_grpc_health_v1_health_proto)}}
	b, err := proto.Marshal(fds)
	if err != nil {
		t.Fatal(err)
	}
	set, rules = filepath.Join(dir, "health.binpb"), filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(set, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rules, []byte(healthRules), 0o600); err != nil {
		t.Fatal(err)
	}
	return set, rules
}

// TestThroughGateway runs the filter in a real Gateway: an HTTP/1.1 listener, a
// route whose transcode filter calls an H2C cluster, a real gRPC health server.
// REST clients get JSON; native gRPC clients on the same route pass through.
func TestThroughGateway(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("books", healthpb.HealthCheckResponse_SERVING)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	set, rules := writeHealthFiles(t)
	cfg := apiHeader + `kind: Listener
metadata: {name: pub}
spec:
  address: 127.0.0.1:0
  protocol: H2C
---
` + apiHeader + `kind: Cluster
metadata: {name: grpc}
spec:
  protocol: H2C
  endpoints: [{address: "` + ln.Addr().String() + `"}]
---
` + apiHeader + `kind: Route
metadata: {name: api}
spec:
  listeners: [pub]
  rules:
    - forward: {backends: [{cluster: grpc}]}
      filters:
        - type: transcode
          config:
            descriptorSetFile: ` + set + `
            httpRulesFile: ` + rules + `
            services: [grpc.health.v1.Health]
            cluster: grpc
            unmatched: next
`
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Role: gateway.RoleIngress, ConfigPaths: []string{path}, AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), PollInterval: -1, ShutdownGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	base := "http://" + g.ListenerAddr("default/pub")
	client := &http.Client{Timeout: 10 * time.Second}

	t.Run("unary as JSON", func(t *testing.T) {
		resp, err := client.Get(base + "/v1/health/books")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || body["status"] != "SERVING" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("got %d %v %q, want 200 {status: SERVING} as JSON", resp.StatusCode, body, resp.Header.Get("Content-Type"))
		}
	})
	t.Run("gRPC error as status JSON", func(t *testing.T) {
		resp, err := client.Get(base + "/v1/health/unknown")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 404 || body["code"] != float64(5) {
			t.Fatalf("got %d %v, want 404 with code 5", resp.StatusCode, body)
		}
	})
	t.Run("server stream flushed message by message", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/health/books:watch", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		lines := bufio.NewReader(resp.Body)
		first, err := lines.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(first, `"SERVING"`) || !strings.HasPrefix(first, `{"result":`) {
			t.Fatalf("first record %q", first)
		}
		// The stream is still open: a change reaches the client as it happens.
		hs.SetServingStatus("books", healthpb.HealthCheckResponse_NOT_SERVING)
		second, err := lines.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(second, `"NOT_SERVING"`) {
			t.Fatalf("second record %q", second)
		}
		hs.SetServingStatus("books", healthpb.HealthCheckResponse_SERVING)
	})
	t.Run("native gRPC passes through", func(t *testing.T) {
		conn, err := grpc.NewClient(g.ListenerAddr("default/pub"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "books"})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("gRPC Check: %v %v", resp, err)
		}
	})
	t.Run("unmatched goes to the route's forward", func(t *testing.T) {
		resp, err := client.Get(base + "/not/bound")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// The gRPC server answers a plain GET itself, not with a transcoder's 404 JSON.
		if resp.Header.Get("Content-Type") == "application/json" {
			t.Fatalf("got a transcoder answer (%d) for an unbound path with unmatched: next", resp.StatusCode)
		}
	})
}
