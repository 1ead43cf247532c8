// Command gwserver serves the transcoder's test library as REST/JSON with
// grpc-gateway: its runtime.ServeMux and the handlers generated from
// library.proto, calling the gRPC server at -backend with one grpc-go client
// connection, behind net/http's server. It is the reference that
// loadtest/transcodebench measures the transcode filter against, so it is
// built the way grpc-gateway's documentation sets a gateway up, with nothing
// added. It listens on loopback only. It is not part of any binary the project
// ships.
//
//	go run ./translate/internal/testpb/gwserver -addr 127.0.0.1:8081 -backend 127.0.0.1:9090
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/portcullis/portcullis/translate/internal/testpb"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address (loopback only)")
	backend := flag.String("backend", "127.0.0.1:9090", "the library's gRPC address")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Fatalf("gwserver: -addr %q is not a loopback address", *addr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mux := runtime.NewServeMux()
	if err := testpb.RegisterLibraryHandlerFromEndpoint(ctx, mux, *backend,
		[]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}); err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-stop; srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
