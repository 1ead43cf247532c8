package translate_test

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/translate/internal/testpb"
)

// reportCPU reports the process's CPU time (user and system, every thread: the
// in-process server's share is the same for every variant) per operation, as
// "cpu-µs/op"; wall time (ns/op) also counts waiting.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((processCPU()-start).Microseconds())/float64(b.N), "cpu-µs/op")
		}
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// grpcForwarder serves a gRPC request by forwarding it as it is, as a route
// without the filter does.
func grpcForwarder(up filter.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := up.ServeHTTP(w, r); err != nil {
			code, reason := filter.StatusOf(err)
			http.Error(w, reason, code)
		}
	})
}

// BenchmarkTranscodeUnary compares the transcode filter (with the core's
// forwarder over H2C) and grpc-gateway's mux (with a grpc-go client) on the same
// requests to the same in-process gRPC server on loopback, and both with the
// core's forwarder sending the same call as gRPC ("grpc-forward": what plain
// gRPC proxying costs on the same path, so filter minus grpc-forward is what
// transcoding adds). All are called as handlers, without an HTTP listener in
// front; the in-process server's own work is in every figure alike.
func BenchmarkTranscodeUnary(b *testing.B) {
	addr := startLibrary(b)
	filt := buildFilter(b, libraryFilterConfig, addr)
	chain := chainHandler(filt)
	gw := startGRPCGateway(b, addr).Config.Handler
	forward := grpcForwarder(h2cUpstream(b, addr))
	cases := []struct {
		name, method, path, body string
		grpc                     proto.Message // the same call as gRPC
		rpc                      string
	}{
		{"get", "GET", "/v1/shelves/s1/books/dune", "",
			&testpb.GetBookRequest{Name: "shelves/s1/books/dune"}, "GetBook"},
		{"create", "POST", "/v1/shelves/s1/books?book_id=new", `{"title":"New","genre":"HISTORY","tags":["a","b"],"readTime":"90s","pageCount":10}`,
			&testpb.CreateBookRequest{Parent: "shelves/s1", BookId: "new", Book: &testpb.Book{Title: "New", Genre: testpb.Genre_HISTORY,
				Tags: []string{"a", "b"}, ReadTime: durationpb.New(90 * time.Second), PageCount: wrapperspb.Int32(10)}}, "CreateBook"},
	}
	for _, c := range cases {
		payload, err := proto.Marshal(c.grpc)
		if err != nil {
			b.Fatal(err)
		}
		frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(payload)))
		frame = append(frame, payload...)
		b.Run(c.name+"/grpc-forward", func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/portcullis.translate.test.library.v1.Library/"+c.rpc, bytes.NewReader(frame))
				req.Header.Set("Content-Type", "application/grpc")
				req.Header.Set("Te", "trailers")
				rec := httptest.NewRecorder()
				forward.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || len(rec.Body.Bytes()) < 5 {
					b.Fatalf("grpc-forward: %d %q", rec.Code, rec.Body)
				}
			}
		})
		for _, impl := range []struct {
			name string
			h    http.Handler
		}{{"filter", chain}, {"grpc-gateway", gw}} {
			b.Run(c.name+"/"+impl.name, func(b *testing.B) {
				b.ReportAllocs()
				defer reportCPU(b)()
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
