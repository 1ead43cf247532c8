package translate_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portcullis/portcullis/gateway"
	_ "github.com/portcullis/portcullis/gateway/filters/restbridge"
	"github.com/portcullis/portcullis/translate/internal/testpb"
)

// startBridgeGateway runs a real Gateway whose H2C listener takes gRPC calls,
// bridged by the restbridge filter (extra config lines in extra) to the REST
// API at restAddr.
func startBridgeGateway(t *testing.T, restAddr, extra string) testpb.LibraryClient {
	t.Helper()
	abs, err := filepath.Abs("internal/testpb/testdata/library.binpb")
	if err != nil {
		t.Fatal(err)
	}
	cfg := `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: mesh}
spec:
  address: 127.0.0.1:0
  protocol: H2C
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: rest}
spec:
  protocol: HTTP1
  endpoints: [{address: "` + restAddr + `"}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: library-egress}
spec:
  listeners: [mesh]
  rules:
    - forward: {backends: [{cluster: rest}]}
      filters:
        - type: restbridge
          config:
            descriptorSetFile: ` + abs + `
            services: [portcullis.translate.test.library.v1.Library]
            cluster: rest
` + extra
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Role: gateway.RoleEgress, ConfigPaths: []string{path},
		Logger: slog.New(slog.DiscardHandler), PollInterval: -1, ShutdownGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	conn, err := grpc.NewClient(g.ListenerAddr("default/mesh"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testpb.NewLibraryClient(conn)
}

// TestBridgeRoundTrip calls the library through the bridge, whose REST API is
// grpc-gateway in front of the same library: a gRPC client, the gateway's
// restbridge filter, a real REST server, the gRPC service. Every answer must
// equal the one a direct gRPC call gets, so the bridge's requests are exactly
// what the rules say (the list's echo shows the query as the service parsed it).
func TestBridgeRoundTrip(t *testing.T) {
	libAddr := startLibrary(t)
	rest := startGRPCGateway(t, libAddr)
	bridged := startBridgeGateway(t, strings.TrimPrefix(rest.URL, "http://"), "")
	conn, err := grpc.NewClient(libAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	direct := testpb.NewLibraryClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	type call func(testpb.LibraryClient) (proto.Message, error)
	for _, c := range []struct {
		name string
		call call
	}{
		{"path variable", func(c testpb.LibraryClient) (proto.Message, error) {
			return c.GetBook(ctx, &testpb.GetBookRequest{Name: "shelves/s1/books/dune"})
		}},
		{"response_body", func(c testpb.LibraryClient) (proto.Message, error) {
			return c.GetBookTitle(ctx, &testpb.GetBookRequest{Name: "shelves/s2/books/spqr"})
		}},
		{"query of every kind", func(c testpb.LibraryClient) (proto.Message, error) {
			return c.ListBooks(ctx, &testpb.ListBooksRequest{Parent: "shelves/s1", PageSize: 5, PageToken: "a b&c", Tags: []string{"space", "x/y"},
				Genre: testpb.Genre_SCIENCE, Genres: []testpb.Genre{testpb.Genre_FICTION, testpb.Genre_HISTORY},
				Filter: &testpb.Filter{Author: &testpb.Author{DisplayName: "Carl Sagan", BornYear: 1934},
					PublishedAfter: timestamppb.New(time.Date(1970, 1, 2, 3, 4, 5, 0, time.UTC)), Available: wrapperspb.Bool(false),
					MaxReadTime: durationpb.New(90 * time.Minute)},
				ReadMask: &fieldmaskpb.FieldMask{Paths: []string{"title", "author.display_name"}}})
		}},
		{"body field and query", func(c testpb.LibraryClient) (proto.Message, error) {
			return c.CreateBook(ctx, &testpb.CreateBookRequest{Parent: "shelves/s2", BookId: "new", Book: &testpb.Book{
				Title: "New", Genre: testpb.Genre_HISTORY, Tags: []string{"a"}, Isbn: 123, Cover: []byte{0xff, 0, 1},
				Labels: map[string]string{"k": "v"}, ReadTime: durationpb.New(1500 * time.Millisecond), PageCount: wrapperspb.Int32(3)}})
		}},
		{"PATCH with a mask", func(c testpb.LibraryClient) (proto.Message, error) {
			return c.UpdateBook(ctx, &testpb.UpdateBookRequest{Book: &testpb.Book{Name: "shelves/s1/books/dune", Title: "Dune II"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"title"}}})
		}},
		{"DELETE with a query bool", func(c testpb.LibraryClient) (proto.Message, error) {
			return c.DeleteBook(ctx, &testpb.DeleteBookRequest{Name: "shelves/s1/books/dune", Force: true})
		}},
		{"body * and a custom verb", func(c testpb.LibraryClient) (proto.Message, error) {
			return c.ArchiveBook(ctx, &testpb.ArchiveBookRequest{Name: "shelves/s1/books/cosmos", Retention: durationpb.New(time.Hour), Reason: "old"})
		}},
		{"error with details", func(c testpb.LibraryClient) (proto.Message, error) {
			return c.GetBook(ctx, &testpb.GetBookRequest{Name: "shelves/s1/books/missing"})
		}},
		{"precondition with details", func(c testpb.LibraryClient) (proto.Message, error) {
			return c.DeleteBook(ctx, &testpb.DeleteBookRequest{Name: "shelves/s1/books/dune"})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, wantErr := c.call(direct)
			got, gotErr := c.call(bridged)
			ws, gs := status.Convert(wantErr), status.Convert(gotErr)
			if ws.Code() != gs.Code() || !proto.Equal(ws.Proto(), gs.Proto()) && ws.Code() != codes.OK {
				t.Fatalf("status %v %q %v, want %v %q %v", gs.Code(), gs.Message(), gs.Details(), ws.Code(), ws.Message(), ws.Details())
			}
			if b, ok := want.(*testpb.Book); ok && c.name == "response_body" {
				want = &testpb.Book{Title: b.Title} // the REST API answers with the title alone
			}
			if wantErr == nil && !proto.Equal(got, want) {
				t.Fatalf("bridged answer\n%v\nwant the direct one\n%v", got, want)
			}
		})
	}
	t.Run("path value of the wrong shape", func(t *testing.T) {
		_, err := bridged.GetBook(ctx, &testpb.GetBookRequest{Name: "shelves/s1"})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "shelves/*/books/*") {
			t.Fatalf("got %v, want INVALID_ARGUMENT naming the template", err)
		}
	})
	t.Run("streaming method is not bridged", func(t *testing.T) {
		s, err := bridged.WatchShelf(ctx, &testpb.WatchShelfRequest{Shelf: "shelves/s1", Count: 1})
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("got %v, want UNIMPLEMENTED", err)
		}
	})
}

// TestBridgeStatusesAndHeaders runs the bridge against a REST API that answers
// as the book's name asks, to check the HTTP-to-gRPC table, error bodies,
// deadlines and the header allow-lists.
func TestBridgeStatusesAndHeaders(t *testing.T) {
	rest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		book := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		w.Header().Set("X-Request-Id", "rest-1")
		switch book {
		case "conflict":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error":{"code":409,"message":"edited by someone else","status":"ABORTED"}}`))
		case "down":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("<h1>maintenance</h1>"))
		case "teapot":
			w.WriteHeader(http.StatusTeapot)
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "notjson":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"title": 5`))
		default:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"name": r.URL.Path, "title": r.Header.Get("X-User") + "@" + r.Host,
				"publisher": "fields the message lacks are dropped"})
		}
	}))
	t.Cleanup(rest.Close)
	client := startBridgeGateway(t, strings.TrimPrefix(rest.URL, "http://"), `            host: books.example.com
            pathPrefix: /api
            requestMetadata: [x-user]
            responseHeaders: [x-request-id]
`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	get := func(ctx context.Context, book string, opts ...grpc.CallOption) (*testpb.Book, error) {
		return client.GetBook(ctx, &testpb.GetBookRequest{Name: "shelves/s1/books/" + book}, opts...)
	}

	t.Run("headers both ways, host and prefix", func(t *testing.T) {
		var hdr metadata.MD
		b, err := get(metadata.AppendToOutgoingContext(ctx, "x-user", "ann", "x-secret", "no"), "ok", grpc.Header(&hdr))
		if err != nil {
			t.Fatal(err)
		}
		if b.Name != "/api/v1/shelves/s1/books/ok" || b.Title != "ann@books.example.com" {
			t.Errorf("the REST API saw path %q and %q, want the prefix, x-user and the configured host", b.Name, b.Title)
		}
		if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] != "rest-1" {
			t.Errorf("response metadata x-request-id = %v", got)
		}
	})
	for _, c := range []struct {
		book    string
		code    codes.Code
		message string
	}{
		{"conflict", codes.Aborted, "edited by someone else"},
		{"down", codes.Unavailable, "HTTP 503"},
		{"teapot", codes.Unknown, "HTTP 418"},
		{"notjson", codes.Internal, "not JSON"},
	} {
		t.Run(c.book, func(t *testing.T) {
			_, err := get(ctx, c.book)
			if st := status.Convert(err); st.Code() != c.code || !strings.Contains(st.Message(), c.message) {
				t.Fatalf("got %v %q, want %v mentioning %q", st.Code(), st.Message(), c.code, c.message)
			}
		})
	}
	t.Run("client deadline", func(t *testing.T) {
		dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer dcancel()
		start := time.Now()
		_, err := get(dctx, "slow")
		if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 3*time.Second {
			t.Fatalf("got %v after %v, want DEADLINE_EXCEEDED soon", err, time.Since(start))
		}
	})
	t.Run("REST API down", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		down := startBridgeGateway(t, addr, "")
		_, err = down.GetBook(ctx, &testpb.GetBookRequest{Name: "shelves/s1/books/dune"})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want UNAVAILABLE", err)
		}
	})
}
