package translate_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkTranscodeUnary compares the transcode filter (with the core's
// forwarder over H2C) and grpc-gateway's mux (with a grpc-go client) on the same
// requests to the same in-process gRPC server on loopback. Both are called as
// handlers, without an HTTP listener in front, so the figures are the
// transcoding paths and their clients only.
func BenchmarkTranscodeUnary(b *testing.B) {
	addr := startLibrary(b)
	filt := buildFilter(b, libraryFilterConfig, addr)
	chain := chainHandler(filt)
	gw := startGRPCGateway(b, addr).Config.Handler
	cases := []struct {
		name, method, path, body string
	}{
		{"get", "GET", "/v1/shelves/s1/books/dune", ""},
		{"create", "POST", "/v1/shelves/s1/books?book_id=new", `{"title":"New","genre":"HISTORY","tags":["a","b"],"readTime":"90s","pageCount":10}`},
	}
	for _, c := range cases {
		for _, impl := range []struct {
			name string
			h    http.Handler
		}{{"filter", chain}, {"grpc-gateway", gw}} {
			b.Run(c.name+"/"+impl.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					var body *strings.Reader
					if c.body != "" {
						body = strings.NewReader(c.body)
					}
					var req *http.Request
					if body != nil {
						req = httptest.NewRequest(c.method, c.path, body)
					} else {
						req = httptest.NewRequest(c.method, c.path, nil)
					}
					rec := httptest.NewRecorder()
					impl.h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatalf("%s: %d %s", impl.name, rec.Code, rec.Body)
					}
				}
			})
		}
	}
}
