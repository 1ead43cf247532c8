// Command backend is the fixed upstream the load-test runner measures against: every
// GET (or HEAD) of any path is answered 200 with a body of -size bytes.
//
// It does as little as a Go HTTP server can, so that the difference between a run
// straight at it and a run through the ingress is the ingress's own cost. It is not a
// test double for gateway behaviour (no slow, failing or streaming responses).
//
//	go run ./loadtest/backend -addr 127.0.0.1:9000 -size 1024
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address (loopback only)")
	size := flag.Int("size", 1024, "response body size in bytes")
	flag.Parse()

	if err := checkLoopback(*addr); err != nil {
		log.Fatal(err)
	}
	if *size < 0 {
		log.Fatalf("-size %d: must not be negative", *size)
	}

	srv := &http.Server{
		Addr:    *addr,
		Handler: newHandler(*size),
		// Bounded so a stuck load generator cannot pin connections forever; generous
		// enough that no measured request comes near them.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Printf("backend: listening on %s, %d-byte bodies", *addr, *size)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// newHandler builds the body once: allocating per request would put the backend's
// own garbage into the figures the ingress is compared against.
func newHandler(size int) http.Handler {
	body := bytes.Repeat([]byte("x"), size)
	length := strconv.Itoa(size)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		// An explicit length keeps the response un-chunked, as most real upstreams
		// answering small objects are.
		h.Set("Content-Length", length)
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}

// checkLoopback refuses anything but a loopback address: load is only ever sent to
// this machine.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: only loopback addresses are allowed", addr)
	}
	return nil
}
