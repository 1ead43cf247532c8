// Command libraryd serves the transcoder's test library (testpb.Server) over
// gRPC, for benchmarks that need it in a process of its own
// (loadtest/transcodebench). It listens on loopback only and stops on SIGTERM
// or SIGINT. It is not part of any binary the project ships.
//
//	go run ./translate/internal/testpb/libraryd -addr 127.0.0.1:9090
package main

import (
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	"github.com/portcullis/portcullis/translate/internal/testpb"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9090", "listen address (loopback only)")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Fatalf("libraryd: -addr %q is not a loopback address", *addr)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterLibraryServer(srv, &testpb.Server{})
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-stop; srv.Stop() }()
	if err := srv.Serve(ln); err != nil {
		log.Fatal(err)
	}
}
