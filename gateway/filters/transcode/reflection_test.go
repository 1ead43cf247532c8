package transcode_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/reflection"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	"github.com/portcullis/portcullis/gateway/filters/transcode"
	"github.com/portcullis/portcullis/gateway/proxy"
	"github.com/portcullis/portcullis/gateway/transport"
	"github.com/portcullis/portcullis/gateway/upstream"
	"github.com/portcullis/portcullis/translate/descriptors"
)

// Two versions of one service. v2 removes DeleteBook (its binding must go),
// adds ListBooks, and removes the field GetAuthor's path template binds (its
// binding must keep its v1 form).
const (
	shelfV1 = `syntax = "proto3";
package demo.v1;
import "google/api/annotations.proto";
message GetBookRequest { string name = 1; }
message GetAuthorRequest { string author = 1; }
message Reply { string method = 1; string request = 2; }
service Shelf {
  rpc GetBook(GetBookRequest) returns (Reply) { option (google.api.http) = {get: "/v1/{name=books/*}"}; }
  rpc DeleteBook(GetBookRequest) returns (Reply) { option (google.api.http) = {delete: "/v1/{name=books/*}"}; }
  rpc GetAuthor(GetAuthorRequest) returns (Reply) { option (google.api.http) = {get: "/v1/authors/{author}"}; }
}
`
	shelfV2 = `syntax = "proto3";
package demo.v1;
import "google/api/annotations.proto";
message GetBookRequest { string name = 1; }
message GetAuthorRequest { string id = 2; }
message ListBooksRequest { int32 page_size = 1; }
message Reply { string method = 1; string request = 2; }
service Shelf {
  rpc GetBook(GetBookRequest) returns (Reply) { option (google.api.http) = {get: "/v1/{name=books/*}"}; }
  rpc GetAuthor(GetAuthorRequest) returns (Reply) { option (google.api.http) = {get: "/v1/authors/{author}"}; }
  rpc ListBooks(ListBooksRequest) returns (Reply) { option (google.api.http) = {get: "/v1/books"}; }
}
`
)

// serviceList is the reflection service's list of services.
type serviceList map[string]grpc.ServiceInfo

func (s serviceList) GetServiceInfo() map[string]grpc.ServiceInfo { return s }

// startShelf serves one version of demo.v1.Shelf with server reflection: every
// method answers Reply{method, request as JSON}, computed from the version's
// own descriptors.
func startShelf(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "shelf.proto"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := descriptors.CompileProtoFiles(context.Background(), []string{"shelf.proto"}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	files := set.Files()
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		full, _ := grpc.MethodFromServerStream(stream)
		svc, name, _ := strings.Cut(strings.TrimPrefix(full, "/"), "/")
		d, err := files.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			return status.Error(codes.Unimplemented, full)
		}
		md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(name))
		if md == nil {
			return status.Error(codes.Unimplemented, full)
		}
		in := dynamicpb.NewMessage(md.Input())
		if err := stream.RecvMsg(in); err != nil {
			return err
		}
		js, _ := protojson.Marshal(in)
		out := dynamicpb.NewMessage(md.Output())
		out.Set(md.Output().Fields().ByName("method"), protoreflect.ValueOfString(name))
		out.Set(md.Output().Fields().ByName("request"), protoreflect.ValueOfString(string(js)))
		return stream.SendMsg(out)
	}))
	rpb.RegisterServerReflectionServer(srv, reflection.NewServerV1(reflection.ServerOptions{
		Services:           serviceList{"demo.v1.Shelf": {}},
		DescriptorResolver: files,
		ExtensionResolver:  protoregistry.GlobalTypes,
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// h2cUpstream is the core's upstream handler for a one-endpoint H2C cluster.
func h2cUpstream(t *testing.T, addr string) filter.Handler {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	c, err := upstream.New("grpc", config.ClusterSpec{Protocol: "H2C", Endpoints: []config.Endpoint{{Address: addr}}},
		upstream.Options{Logger: quiet, NewPool: func(a string) io.Closer {
			return transport.New(a, transport.Options{Protocol: transport.H2C})
		}})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(c.Close)
	fw, err := proxy.NewForwarder(&config.Forward{}, []proxy.Backend{{Upstream: &proxy.Upstream{Cluster: c}, Weight: 1}}, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return fw
}

// switchable is the cluster as the filter sees it: the test moves it from no
// server at all, to v1, to v2, as a deployment would.
type switchable struct {
	to atomic.Pointer[filter.Handler]
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	h := s.to.Load()
	if h == nil {
		return &filter.Error{Status: http.StatusServiceUnavailable, Reason: "no_healthy_upstream"}
	}
	return (*h).ServeHTTP(w, r)
}

func (s *switchable) set(h filter.Handler) { s.to.Store(&h) }

type statusReporter interface {
	ReflectionStatus() (transcode.ReflectionStatus, bool)
}

// waitStatus polls the filter's status until ok accepts it, for at most 15 s.
func waitStatus(t *testing.T, f filter.Filter, what string, ok func(transcode.ReflectionStatus) bool) transcode.ReflectionStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, _ := f.(statusReporter).ReflectionStatus()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15s, still not %s: %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func serveFilter(t *testing.T, f filter.Filter) string {
	t.Helper()
	chain := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return &filter.Error{Status: http.StatusTeapot, Reason: "reached_terminal"}
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := chain.ServeHTTP(w, r); err != nil {
			code, reason := filter.StatusOf(err)
			http.Error(w, reason, code)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// call sends a request and returns the status and the JSON body.
func call(t *testing.T, method, url string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s %s: %d, body not JSON: %v", method, url, resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

func buildReflecting(t *testing.T, up filter.Handler, dataDir string) filter.Filter {
	t.Helper()
	return filtertest.MustBuild(t, "transcode", "reflection: {refreshInterval: 1s}\nservices: [demo.v1.Shelf]\ncluster: grpc\n",
		filtertest.WithClusters("grpc"), closeBuilt, filtertest.WithBuild(func(b *filter.Build) {
			b.Upstreams = filtertest.Upstreams{"grpc": up}
			b.DataDir = dataDir
		}))
}

// TestReflectionFollowsTheService: descriptors come from a real server's
// reflection service; before they do, requests get 503 saying why; a new version
// of the service is picked up by a periodic refresh without rebuilding the
// filter, with the breaking parts handled as documented; a filter built later
// with the same data directory serves the last descriptors at once.
func TestReflectionFollowsTheService(t *testing.T) {
	v1, v2 := startShelf(t, shelfV1), startShelf(t, shelfV2)
	cluster := &switchable{}
	dataDir := t.TempDir()
	f := buildReflecting(t, cluster, dataDir)
	base := serveFilter(t, f)

	// No server yet: the fetch fails, and requests say so.
	waitStatus(t, f, "a failed fetch", func(s transcode.ReflectionStatus) bool { return s.ConsecutiveFailures >= 1 })
	code, body := call(t, "GET", base+"/v1/books/b1")
	if msg, _ := body["message"].(string); code != 503 || body["code"] != float64(14) ||
		!strings.Contains(msg, "not been fetched") || !strings.Contains(msg, "no_healthy_upstream") {
		t.Fatalf("before any descriptors: %d %v, want 503 UNAVAILABLE naming the reason", code, body)
	}

	// v1 comes up: the retry finds it.
	cluster.set(h2cUpstream(t, v1))
	st := waitStatus(t, f, "serving v1", func(s transcode.ReflectionStatus) bool { return s.State == transcode.StateServing })
	if st.Generation != 1 || st.Bindings != 3 || st.ConsecutiveFailures != 0 || len(st.Digest) != 64 {
		t.Fatalf("status after v1: %+v", st)
	}
	for _, c := range []struct{ method, path, rpc, request string }{
		{"GET", "/v1/books/b1", "GetBook", `"name":"books/b1"`},
		{"DELETE", "/v1/books/b1", "DeleteBook", `"name":"books/b1"`},
		{"GET", "/v1/authors/ann", "GetAuthor", `"author":"ann"`},
	} {
		code, body := call(t, c.method, base+c.path)
		req, _ := body["request"].(string)
		if code != 200 || body["method"] != c.rpc || !strings.Contains(strings.ReplaceAll(req, " ", ""), c.request) {
			t.Errorf("v1 %s %s: %d %v, want %s with %s", c.method, c.path, code, body, c.rpc, c.request)
		}
	}

	// v2 is deployed: the next periodic refresh applies it.
	cluster.set(h2cUpstream(t, v2))
	st = waitStatus(t, f, "serving v2", func(s transcode.ReflectionStatus) bool { return s.Generation == 2 })
	v2Digest := st.Digest
	if st.State != transcode.StateRetaining || st.BreakingChanges != 1 || len(st.Retained) != 1 ||
		!strings.Contains(st.Retained[0], "GetAuthor") || st.Bindings != 3 {
		t.Fatalf("status after v2: %+v, want GetAuthor retained and one breaking change", st)
	}
	if code, body := call(t, "GET", base+"/v1/books"); code != 200 || body["method"] != "ListBooks" {
		t.Errorf("added ListBooks: %d %v", code, body)
	}
	if code, body := call(t, "DELETE", base+"/v1/books/b1"); code != 405 {
		t.Errorf("removed DeleteBook: %d %v, want 405 (GET is still bound there)", code, body)
	}
	if code, body := call(t, "GET", base+"/v1/authors/ann"); code != 200 || body["method"] != "GetAuthor" {
		t.Errorf("retained GetAuthor: %d %v, want it still served", code, body)
	}

	// An unchanged service: refreshes succeed and apply nothing.
	before := st.LastSuccess
	st = waitStatus(t, f, "refreshed again", func(s transcode.ReflectionStatus) bool { return s.LastSuccess.After(before) })
	if st.Generation != 2 {
		t.Errorf("an unchanged digest was applied again: generation %d", st.Generation)
	}

	// A filter built later (a reload) serves the kept descriptors before any
	// fetch. It is built from v2 alone: the retained binding is gone.
	down := &switchable{}
	again := buildReflecting(t, down, dataDir)
	st, _ = again.(statusReporter).ReflectionStatus()
	if !st.FromCache || st.State != transcode.StateServing || st.Bindings != 2 || st.Digest != v2Digest {
		t.Fatalf("rebuilt filter: %+v, want v2's two compiling bindings from the data directory", st)
	}
	if code, body := call(t, "GET", serveFilter(t, again)+"/v1/books"); code != 503 || body["code"] != float64(14) {
		// Served from the cached descriptors: the call itself reached the
		// (down) cluster and failed there, not for want of descriptors.
		t.Errorf("rebuilt filter, cluster down: %d %v, want the upstream's 503", code, body)
	}
}
