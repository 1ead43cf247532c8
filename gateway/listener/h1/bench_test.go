package h1_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

var body1k = bytes.Repeat([]byte("x"), 1024)

// benchHandler answers like the proxy benchmark's backend: 1 KiB, text/plain.
var benchHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Write(body1k)
})

// BenchmarkServe: one keep-alive client on loopback, GET with a 1 KiB answer,
// h1.ServeConn against net/http's server with the same handler. ns/op and
// allocations include the (lean, allocation-free) client.
func BenchmarkServe(b *testing.B) {
	l := limits{maxHeaderBytes: 32 << 10, maxHeaders: 100, readHeaderTimeout: 10 * time.Second, idleTimeout: 120 * time.Second}
	for _, tc := range []struct {
		name  string
		start func(testing.TB, http.Handler, limits) *server
	}{
		{"h1", func(t testing.TB, h http.Handler, l limits) *server { return startH1(t, h, l, nil) }},
		{"net-http", func(t testing.TB, h http.Handler, l limits) *server {
			l.maxHeaders = 0 // no count wrapper: net/http as it is
			return startNetHTTP(t, h, l)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := tc.start(b, benchHandler, l)
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			cl := newLeanClient(c)
			if err := cl.get(); err != nil { // connect and warm up
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := cl.get(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// leanClient sends "GET /" and reads a Content-Length response, allocating
// nothing, so that the benchmark measures the server.
type leanClient struct {
	c  net.Conn
	br *bufio.Reader
}

var benchReq = []byte("GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: lean\r\nAccept: */*\r\n\r\n")

func newLeanClient(c net.Conn) *leanClient {
	return &leanClient{c: c, br: bufio.NewReaderSize(c, 16<<10)}
}

func (l *leanClient) get() error {
	if _, err := l.c.Write(benchReq); err != nil {
		return err
	}
	cl := -1
	for first := true; ; first = false {
		line, err := l.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first {
			if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
				return fmt.Errorf("status line %q", line)
			}
			continue
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return err
			}
			cl = n
		}
	}
	if cl != len(body1k) {
		return fmt.Errorf("Content-Length %d", cl)
	}
	_, err := l.br.Discard(cl)
	return err
}
