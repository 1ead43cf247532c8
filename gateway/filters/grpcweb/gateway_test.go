package grpcweb_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portcullis/portcullis/gateway"
	_ "github.com/portcullis/portcullis/gateway/filters/cors"
	_ "github.com/portcullis/portcullis/gateway/filters/grpcweb"
)

const origin = "https://app.example.com"

// countService is a server-streaming method without generated code: it sends
// "n" StringValue messages (n from the request) and ends with the status the
// request names ("n,code"), with an ErrorInfo detail, and sets header and
// trailer metadata.
var countService = grpc.ServiceDesc{
	ServiceName: "test.web.Counter",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Count",
		ServerStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			var in wrapperspb.StringValue
			if err := stream.RecvMsg(&in); err != nil {
				return err
			}
			nStr, codeStr, _ := strings.Cut(in.Value, ",")
			n, _ := strconv.Atoi(nStr)
			code, _ := strconv.Atoi(codeStr)
			stream.SetHeader(metadata.Pairs("x-count", nStr))
			stream.SetTrailer(metadata.Pairs("x-done", "yes"))
			for i := range n {
				if err := stream.SendMsg(wrapperspb.String(fmt.Sprintf("item-%d", i))); err != nil {
					return err
				}
			}
			if code == 0 {
				return nil
			}
			st, _ := status.New(codes.Code(code), "counting stopped: 100% done").WithDetails(&errdetails.ErrorInfo{Reason: "STOPPED"})
			return st.Err()
		},
	}},
}

// startGateway runs a real Gateway: an HTTP/1.1 listener whose route has the
// cors filter and the grpcweb filter, forwarding to an H2C cluster with a gRPC
// health server and the counter.
func startGateway(t *testing.T) (base string, hs *health.Server, listenerAddr string) {
	t.Helper()
	hs = health.NewServer()
	hs.SetServingStatus("books", healthpb.HealthCheckResponse_SERVING)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	srv.RegisterService(&countService, struct{}{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	cfg := `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: pub}
spec:
  address: 127.0.0.1:0
  protocol: H2C
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: grpc}
spec:
  protocol: H2C
  endpoints: [{address: "` + ln.Addr().String() + `"}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: web}
spec:
  listeners: [pub]
  rules:
    - forward: {backends: [{cluster: grpc}]}
      filters:
        - type: cors
          config:
            allowedOrigins: [` + origin + `]
            allowedMethods: [POST]
            allowedHeaders: [content-type, x-grpc-web, x-user-agent, grpc-timeout]
            exposedHeaders: [grpc-status, grpc-message, grpc-status-details-bin, x-count]
        - type: grpcweb
          config:
            cluster: grpc
            maxRequestBytes: 1024
`
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Role: gateway.RoleIngress, ConfigPaths: []string{path},
		Logger: slog.New(slog.DiscardHandler), PollInterval: -1, ShutdownGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	return "http://" + g.ListenerAddr("default/pub"), hs, g.ListenerAddr("default/pub")
}

// h1Client speaks HTTP/1.1 only, as a browser's XMLHttpRequest may.
func h1Client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: false}}
}

// webResponse is a gRPC-Web answer as a spec-following client reads it.
type webResponse struct {
	header   http.Header
	messages [][]byte
	trailers map[string]string // lower-case names
	// trailersOnly: the status came in the HTTP headers, with no body.
	trailersOnly bool
}

func (r webResponse) code(t *testing.T) codes.Code {
	t.Helper()
	n, err := strconv.Atoi(r.trailers["grpc-status"])
	if err != nil {
		t.Fatalf("no grpc-status in %v", r.trailers)
	}
	return codes.Code(n)
}

// encodeRequest frames msg as a gRPC-Web request body.
func encodeRequest(t *testing.T, msg proto.Message, text bool) []byte {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b)))
	frame = append(frame, b...)
	if text {
		return []byte(base64.StdEncoding.EncodeToString(frame))
	}
	return frame
}

func newWebRequest(ctx context.Context, t *testing.T, base, method string, body []byte, text bool) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+method, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	ct := "application/grpc-web+proto"
	if text {
		ct = "application/grpc-web-text"
		req.Header.Set("Accept", "application/grpc-web-text")
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("X-Grpc-Web", "1")
	req.Header.Set("X-User-Agent", "grpc-web-test/1.0")
	req.Header.Set("Origin", origin)
	return req
}

// frameStream reads gRPC-Web frames from a response body: binary, or text
// decoded one base64 quantum at a time (a quantum stands alone, so padding
// anywhere in the stream is fine).
type frameStream struct {
	r    *bufio.Reader
	text bool
	out  []byte
}

func (s *frameStream) fill(n int) error {
	for len(s.out) < n {
		if !s.text {
			var b [4096]byte
			k, err := s.r.Read(b[:])
			s.out = append(s.out, b[:k]...)
			if err != nil && len(s.out) < n {
				return err
			}
			continue
		}
		var q [4]byte
		if _, err := io.ReadFull(s.r, q[:]); err != nil {
			return err
		}
		d, err := base64.StdEncoding.DecodeString(string(q[:]))
		if err != nil {
			return fmt.Errorf("text body quantum %q: %v", q, err)
		}
		s.out = append(s.out, d...)
	}
	return nil
}

// next returns the next frame's flag and payload.
func (s *frameStream) next() (byte, []byte, error) {
	if err := s.fill(5); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(s.out[1:5]))
	if err := s.fill(5 + n); err != nil {
		return 0, nil, fmt.Errorf("frame cut short: %w", err)
	}
	flag, payload := s.out[0], append([]byte(nil), s.out[5:5+n]...)
	s.out = s.out[5+n:]
	return flag, payload, nil
}

// readWeb reads a whole gRPC-Web response, checking the framing rules: data
// frames, then exactly one trailer frame, last.
func readWeb(t *testing.T, resp *http.Response, text bool) webResponse {
	t.Helper()
	defer resp.Body.Close()
	out := webResponse{header: resp.Header, trailers: map[string]string{}}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d, want 200 (gRPC-Web carries errors in grpc-status)", resp.StatusCode)
	}
	if s := resp.Header.Get("Grpc-Status"); s != "" {
		out.trailersOnly = true
		out.trailers["grpc-status"] = s
		out.trailers["grpc-message"] = resp.Header.Get("Grpc-Message")
		if rest, _ := io.ReadAll(resp.Body); len(rest) > 0 {
			t.Fatalf("trailers-only response with a body %q", rest)
		}
		return out
	}
	fs := &frameStream{r: bufio.NewReader(resp.Body), text: text}
	for range 1000 {
		flag, payload, err := fs.next()
		if err != nil {
			t.Fatalf("reading frames: %v (no trailer frame?)", err)
		}
		if flag&0x80 == 0 {
			out.messages = append(out.messages, payload)
			continue
		}
		for _, line := range strings.Split(string(payload), "\r\n") {
			if line == "" {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok || k != strings.ToLower(k) {
				t.Fatalf("trailer line %q is not a lower-case header line", line)
			}
			out.trailers[k] = strings.TrimSpace(v)
		}
		if err := fs.fill(1); err == nil {
			t.Fatalf("bytes after the trailer frame: %q", fs.out)
		}
		return out
	}
	t.Fatal("more than 1000 frames")
	return out
}

func TestGRPCWebThroughGateway(t *testing.T) {
	base, hs, addr := startGateway(t)
	client := h1Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, text := range []bool{false, true} {
		mode := map[bool]string{false: "binary", true: "text"}[text]
		t.Run(mode+"/unary", func(t *testing.T) {
			req := newWebRequest(ctx, t, base, "/grpc.health.v1.Health/Check",
				encodeRequest(t, &healthpb.HealthCheckRequest{Service: "books"}, text), text)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.ProtoMajor != 1 {
				t.Fatalf("answered over HTTP/%d, want HTTP/1.1", resp.ProtoMajor)
			}
			wantCT := map[bool]string{false: "application/grpc-web+proto", true: "application/grpc-web-text+proto"}[text]
			if ct := resp.Header.Get("Content-Type"); ct != wantCT {
				t.Errorf("content-type %q, want %q", ct, wantCT)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != origin {
				t.Errorf("Access-Control-Allow-Origin %q: the cors filter did not run before grpcweb", got)
			}
			if exp := strings.ToLower(resp.Header.Get("Access-Control-Expose-Headers")); !strings.Contains(exp, "grpc-status") {
				t.Errorf("Access-Control-Expose-Headers %q lacks grpc-status", exp)
			}
			web := readWeb(t, resp, text)
			if web.trailersOnly || web.code(t) != codes.OK || len(web.messages) != 1 {
				t.Fatalf("got %d messages, trailers %v (trailers-only %v), want one message and OK", len(web.messages), web.trailers, web.trailersOnly)
			}
			var hc healthpb.HealthCheckResponse
			if err := proto.Unmarshal(web.messages[0], &hc); err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("message %v (%v), want SERVING", &hc, err)
			}
		})
		t.Run(mode+"/stream with error status in the trailer frame", func(t *testing.T) {
			req := newWebRequest(ctx, t, base, "/test.web.Counter/Count", encodeRequest(t, wrapperspb.String("3,9"), text), text)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			web := readWeb(t, resp, text)
			if len(web.messages) != 3 || web.code(t) != codes.FailedPrecondition {
				t.Fatalf("got %d messages and trailers %v, want 3 and FAILED_PRECONDITION", len(web.messages), web.trailers)
			}
			for i, m := range web.messages {
				var s wrapperspb.StringValue
				if err := proto.Unmarshal(m, &s); err != nil || s.Value != fmt.Sprintf("item-%d", i) {
					t.Errorf("message %d = %q (%v)", i, s.Value, err)
				}
			}
			if web.trailers["grpc-message"] != "counting stopped: 100%25 done" {
				t.Errorf("grpc-message %q, want the service's percent-encoded message", web.trailers["grpc-message"])
			}
			if web.trailers["x-done"] != "yes" || web.header.Get("X-Count") != "3" {
				t.Errorf("metadata: trailer x-done %q, header x-count %q", web.trailers["x-done"], web.header.Get("X-Count"))
			}
			bin, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(web.trailers["grpc-status-details-bin"], "="))
			var st spb.Status
			if err != nil || proto.Unmarshal(bin, &st) != nil || len(st.Details) != 1 || st.Code != int32(codes.FailedPrecondition) {
				t.Errorf("grpc-status-details-bin %q does not carry the status with its detail (%v)", web.trailers["grpc-status-details-bin"], err)
			}
		})
		t.Run(mode+"/trailers-only error", func(t *testing.T) {
			req := newWebRequest(ctx, t, base, "/grpc.health.v1.Health/Check",
				encodeRequest(t, &healthpb.HealthCheckRequest{Service: "nope"}, text), text)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			web := readWeb(t, resp, text)
			if !web.trailersOnly || web.code(t) != codes.NotFound {
				t.Fatalf("trailers-only %v, status %v; want a trailers-only NOT_FOUND", web.trailersOnly, web.trailers)
			}
		})
	}

	t.Run("messages are flushed one by one", func(t *testing.T) {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		req := newWebRequest(sctx, t, base, "/grpc.health.v1.Health/Watch",
			encodeRequest(t, &healthpb.HealthCheckRequest{Service: "books"}, true), true)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		fs := &frameStream{r: bufio.NewReader(resp.Body), text: true}
		read := func(want healthpb.HealthCheckResponse_ServingStatus) {
			t.Helper()
			flag, payload, err := fs.next()
			var hc healthpb.HealthCheckResponse
			if err != nil || flag != 0 || proto.Unmarshal(payload, &hc) != nil || hc.Status != want {
				t.Fatalf("frame %x %v (%v), want a message with %v", flag, &hc, err, want)
			}
		}
		read(healthpb.HealthCheckResponse_SERVING)
		// The stream is still open: a change reaches the browser as it happens.
		hs.SetServingStatus("books", healthpb.HealthCheckResponse_NOT_SERVING)
		read(healthpb.HealthCheckResponse_NOT_SERVING)
		hs.SetServingStatus("books", healthpb.HealthCheckResponse_SERVING)
	})

	t.Run("text request sent as separately padded chunks", func(t *testing.T) {
		// Two base64 chunks, the first padded: the frame header alone, then the message.
		b, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: "books"})
		hdr := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b)))
		body := base64.StdEncoding.EncodeToString(hdr) + base64.StdEncoding.EncodeToString(b)
		if !strings.Contains(strings.TrimRight(body, "="), "=") {
			t.Fatalf("test body %q has no padding in the middle", body)
		}
		resp, err := client.Do(newWebRequest(ctx, t, base, "/grpc.health.v1.Health/Check", []byte(body), true))
		if err != nil {
			t.Fatal(err)
		}
		web := readWeb(t, resp, true)
		if web.code(t) != codes.OK || len(web.messages) != 1 {
			t.Fatalf("trailers %v, %d messages", web.trailers, len(web.messages))
		}
	})

	t.Run("request over maxRequestBytes", func(t *testing.T) {
		big := encodeRequest(t, &healthpb.HealthCheckRequest{Service: strings.Repeat("x", 2000)}, false)
		resp, err := client.Do(newWebRequest(ctx, t, base, "/grpc.health.v1.Health/Check", big, false))
		if err != nil {
			t.Fatal(err)
		}
		if web := readWeb(t, resp, false); web.code(t) != codes.ResourceExhausted {
			t.Fatalf("status %v, want RESOURCE_EXHAUSTED", web.trailers)
		}
	})

	t.Run("bad base64", func(t *testing.T) {
		resp, err := client.Do(newWebRequest(ctx, t, base, "/grpc.health.v1.Health/Check", []byte("AAAA!!!!"), true))
		if err != nil {
			t.Fatal(err)
		}
		if web := readWeb(t, resp, true); web.code(t) != codes.InvalidArgument {
			t.Fatalf("status %v, want INVALID_ARGUMENT", web.trailers)
		}
	})

	t.Run("CORS preflight", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodOptions, base+"/grpc.health.v1.Health/Check", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,x-grpc-web,x-user-agent")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != origin ||
			!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "x-grpc-web") {
			t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("native gRPC passes through", func(t *testing.T) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "books"})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("gRPC Check: %v %v", resp, err)
		}
	})

	t.Run("GET is refused", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/grpc.health.v1.Health/Check", nil)
		req.Header.Set("Content-Type", "application/grpc-web")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Fatalf("GET: %d Allow %q, want 405 Allow POST", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
}
