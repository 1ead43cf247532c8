package translate_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	_ "github.com/portcullis/portcullis/gateway/filters/transcode"
	"github.com/portcullis/portcullis/gateway/proxy"
	"github.com/portcullis/portcullis/gateway/transport"
	"github.com/portcullis/portcullis/gateway/upstream"
	"github.com/portcullis/portcullis/translate/internal/testpb"
)

// startLibrary serves testpb.Server on a loopback port until the test ends.
func startLibrary(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterLibraryServer(srv, &testpb.Server{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// h2cUpstream is the core's upstream handler for a one-endpoint H2C cluster at
// addr, built the way the snapshot builds the handler it gives filters: a
// Cluster (balancer, breakers) with H2C pools behind a Forwarder.
func h2cUpstream(t testing.TB, addr string) filter.Handler {
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

// libraryFilterConfig exposes the library from its compiled descriptor set, with
// the metadata the golden cases look at.
const libraryFilterConfig = `descriptorSetFile: internal/testpb/testdata/library.binpb
services: [portcullis.translate.test.library.v1.Library]
cluster: grpc
grpcMetadataHeaders: true
responseMetadata: [x-request-id, x-echo-user, x-cost]
`

// chainHandler serves the filter's chain the way the core does: the filter, then
// a terminal that fails the test's expectations if reached (unmatched requests
// are answered by the filter itself in these configs), and an error answered
// with its status.
func chainHandler(f filter.Filter) http.Handler {
	chain := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return &filter.Error{Status: http.StatusTeapot, Reason: "reached_terminal"}
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := chain.ServeHTTP(w, r); err != nil {
			status, reason := filter.StatusOf(err)
			http.Error(w, reason, status)
		}
	})
}

// buildFilter builds the transcode filter from cfg with the cluster "grpc" at addr.
func buildFilter(t testing.TB, cfg, addr string) filter.Filter {
	t.Helper()
	up := h2cUpstream(t, addr)
	return filtertest.MustBuild(t, "transcode", cfg, filtertest.WithClusters("grpc"),
		filtertest.WithBuild(func(b *filter.Build) { b.Upstreams = filtertest.Upstreams{"grpc": up} }))
}

// startTranscoder serves the filter (with cfg) over real HTTP on loopback.
func startTranscoder(t testing.TB, cfg, addr string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(chainHandler(buildFilter(t, cfg, addr)))
	t.Cleanup(srv.Close)
	return srv
}

// startGRPCGateway serves grpc-gateway's mux with the generated handlers of the
// library, calling the server at addr, over real HTTP on loopback.
func startGRPCGateway(t testing.TB, addr string) *httptest.Server {
	t.Helper()
	mux := runtime.NewServeMux()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := testpb.RegisterLibraryHandler(context.Background(), mux, conn); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}
