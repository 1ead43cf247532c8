package descriptors_test

import (
	"context"
	"io"
	"net"
	"net/http"
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
	v1alphagrpc "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"

	"github.com/portcullis/portcullis/translate/descriptors"
	"github.com/portcullis/portcullis/translate/internal/testpb"
)

// h2cInvoker sends requests to a gRPC server over HTTP/2 without TLS and copies
// the answer, trailers as "Trailer:"-prefixed keys, as the gateway's upstream
// handler does.
type h2cInvoker struct {
	addr string
	rt   *http.Transport
}

func newH2CInvoker(t *testing.T, addr string) h2cInvoker {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	rt := &http.Transport{Protocols: p}
	t.Cleanup(rt.CloseIdleConnections)
	return h2cInvoker{addr: addr, rt: rt}
}

func (i h2cInvoker) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	r = r.Clone(r.Context())
	r.URL.Host = i.addr
	resp, err := i.rt.RoundTrip(r)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		return err
	}
	for k, vs := range resp.Trailer {
		w.Header()[http.TrailerPrefix+k] = vs
	}
	return nil
}

func serve(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	srv := grpc.NewServer()
	testpb.RegisterLibraryServer(srv, &testpb.Server{})
	register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

const library = "portcullis.translate.test.library.v1.Library"

func TestFetchReflection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v1 := serve(t, func(s *grpc.Server) { reflection.RegisterV1(s) })
	v1alphaOnly := serve(t, func(s *grpc.Server) {
		v1alphagrpc.RegisterServerReflectionServer(s, reflection.NewServer(reflection.ServerOptions{Services: s}))
	})
	none := serve(t, func(*grpc.Server) {})

	for name, addr := range map[string]string{"v1": v1, "v1alpha only": v1alphaOnly} {
		t.Run(name, func(t *testing.T) {
			fds, err := descriptors.FetchReflection(ctx, newH2CInvoker(t, addr), "library", []string{library})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range fds.GetFile() {
				names = append(names, f.GetName())
			}
			if !strings.Contains(strings.Join(names, " "), "library.proto") || !strings.Contains(strings.Join(names, " "), "google/api/annotations.proto") {
				t.Fatalf("files %v, want library.proto and its imports", names)
			}
			set, err := descriptors.FromFileDescriptorSet(fds)
			if err != nil {
				t.Fatal(err)
			}
			sd, err := set.Service(library)
			if err != nil {
				t.Fatal(err)
			}
			if rule := descriptors.HTTPRule(sd.Methods().ByName("GetBook")); rule.GetGet() != "/v1/{name=shelves/*/books/*}" {
				t.Fatalf("GetBook's annotation did not survive reflection: %v", rule)
			}
			again, err := descriptors.FetchReflection(ctx, newH2CInvoker(t, addr), "library", []string{library})
			if err != nil || descriptors.Digest(again) != descriptors.Digest(fds) || len(descriptors.Digest(fds)) != 64 {
				t.Fatalf("a second fetch of the same service has another digest (%v)", err)
			}
		})
	}
	t.Run("unknown service", func(t *testing.T) {
		_, err := descriptors.FetchReflection(ctx, newH2CInvoker(t, v1), "library", []string{library, "no.Such"})
		if err == nil || !strings.Contains(err.Error(), "service no.Such") || !strings.Contains(err.Error(), "NotFound") {
			t.Fatalf("error %v, want one naming the service and NotFound", err)
		}
	})
	t.Run("no reflection service", func(t *testing.T) {
		_, err := descriptors.FetchReflection(ctx, newH2CInvoker(t, none), "library", []string{library})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("error %v, want UNIMPLEMENTED", err)
		}
	})
}

// stingyReflection answers every request with the one file asked for and none
// of its imports, as some servers do: the client must ask again, level by level.
type stingyReflection struct {
	rpb.UnimplementedServerReflectionServer
	files   map[string][]byte // name -> FileDescriptorProto
	symbols map[string]string // service -> file name
	asked   atomic.Int32
}

func (s *stingyReflection) ServerReflectionInfo(stream rpb.ServerReflection_ServerReflectionInfoServer) error {
	for range 100 {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		s.asked.Add(1)
		name := req.GetFileByFilename()
		if sym := req.GetFileContainingSymbol(); sym != "" {
			name = s.symbols[sym]
		}
		resp := &rpb.ServerReflectionResponse{OriginalRequest: req}
		if raw, ok := s.files[name]; ok {
			resp.MessageResponse = &rpb.ServerReflectionResponse_FileDescriptorResponse{
				FileDescriptorResponse: &rpb.FileDescriptorResponse{FileDescriptorProto: [][]byte{raw}}}
		} else {
			resp.MessageResponse = &rpb.ServerReflectionResponse_ErrorResponse{
				ErrorResponse: &rpb.ErrorResponse{ErrorCode: int32(codes.NotFound), ErrorMessage: "no file " + name}}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return status.Error(codes.ResourceExhausted, "too many requests on one stream")
}

func TestFetchReflectionImportsLevelByLevel(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"a.proto": "syntax = \"proto3\";\npackage demo;\nimport \"b.proto\";\nservice Svc { rpc Get(B) returns (B); }\n",
		"b.proto": "syntax = \"proto3\";\npackage demo;\nimport \"c.proto\";\nmessage B { C c = 1; }\n",
		"c.proto": "syntax = \"proto3\";\npackage demo;\nimport \"google/protobuf/timestamp.proto\";\nmessage C { google.protobuf.Timestamp at = 1; }\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	set, err := descriptors.CompileProtoFiles(context.Background(), []string{"a.proto"}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	srv := &stingyReflection{files: map[string][]byte{}, symbols: map[string]string{"demo.Svc": "a.proto"}}
	for _, name := range []string{"a.proto", "b.proto", "c.proto"} {
		fd, err := set.Files().FindFileByPath(name)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := proto.Marshal(protodesc.ToFileDescriptorProto(fd))
		if err != nil {
			t.Fatal(err)
		}
		srv.files[name] = raw
	}
	addr := serve(t, func(s *grpc.Server) { rpb.RegisterServerReflectionServer(s, srv) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fds, err := descriptors.FetchReflection(ctx, newH2CInvoker(t, addr), "demo", []string{"demo.Svc"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fds.GetFile() {
		names = append(names, f.GetName())
	}
	// google/protobuf/timestamp.proto is the binary's own: never asked for.
	if strings.Join(names, " ") != "a.proto b.proto c.proto" || srv.asked.Load() != 3 {
		t.Fatalf("files %v after %d requests, want a, b and c after 3", names, srv.asked.Load())
	}
	if _, err := descriptors.FromFileDescriptorSet(fds); err != nil {
		t.Fatalf("the fetched set does not link: %v", err)
	}
}
