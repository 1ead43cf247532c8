package gateway_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestGRPCPassthrough runs a real gRPC server behind an h2c listener and checks that
// status codes, metadata, trailers, deadlines, cancellation and streams pass intact.
func TestGRPCPassthrough(t *testing.T) {
	canceled := make(chan struct{}, 1)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if r, ok := req.(*healthpb.HealthCheckRequest); ok && r.Service == "slow" {
			select {
			case <-ctx.Done():
				canceled <- struct{}{}
				return nil, ctx.Err()
			case <-time.After(10 * time.Second):
				return nil, status.Error(codes.Internal, "deadline did not propagate")
			}
		}
		grpc.SetTrailer(ctx, metadata.Pairs("x-echo", first(md.Get("x-user"))))
		return h(ctx, req)
	}))
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()

	g, _, _ := start(t, header+`kind: Listener
metadata: {name: pub}
spec:
  address: 127.0.0.1:0
  protocol: H2C
---
`+header+`kind: Cluster
metadata: {name: grpc}
spec:
  protocol: H2C
  endpoints: [{address: "`+ln.Addr().String()+`"}]
---
`+header+`kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - match: {path: {prefix: /grpc.health.v1.Health/}}
      forward: {backends: [{cluster: grpc}]}
`)
	conn, err := grpc.NewClient(g.ListenerAddr("default/pub"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)

	t.Run("unary with metadata and trailers", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-user", "alice"), 5*time.Second)
		defer cancel()
		var trailer metadata.MD
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"}, grpc.Trailer(&trailer))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("status %v", resp.Status)
		}
		if got := first(trailer.Get("x-echo")); got != "alice" {
			t.Fatalf("trailer x-echo = %q, want the request metadata echoed", got)
		}
	})
	t.Run("error status", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("err %v, want NotFound", err)
		}
	})
	t.Run("deadline and cancellation reach the server", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "slow"})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("err %v, want DeadlineExceeded", err)
		}
		select {
		case <-canceled:
		case <-time.After(5 * time.Second):
			t.Fatal("the server never saw the cancellation")
		}
	})
	t.Run("server stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if msg.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("first message %v", msg.Status)
		}
		hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
		msg, err = stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if msg.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("second message %v: the stream was not flushed through", msg.Status)
		}
	})
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
