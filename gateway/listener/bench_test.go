package listener

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
)

// A browser-like GET: 13 field lines, 600-odd bytes.
var benchGET = "GET /api/v1/users/12345/orders?page=2&sort=desc HTTP/1.1\r\n" +
	"Host: api.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Referer: https://www.example.com/account/orders\r\n" +
	"Cookie: session=3f1c2a9e8b7d6c5f4e3d2c1b0a9f8e7d; theme=dark; consent=1\r\n" +
	"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl\r\n" +
	"X-Request-Id: 7d0e4b3a-2f1c-4e5d-9a8b-6c7d8e9f0a1b\r\n" +
	"Sec-Fetch-Dest: document\r\n" +
	"Sec-Fetch-Mode: navigate\r\n" +
	"Connection: keep-alive\r\n" +
	"\r\n"

func benchStreams() map[string]string {
	body := strings.Repeat("x", 1024)
	return map[string]string{
		"get":     benchGET,
		"post-cl": strings.Replace(benchGET, "GET", "POST", 1)[:len(benchGET)-2] + "Content-Length: 1024\r\n\r\n" + body,
		"chunked": strings.Replace(benchGET, "GET", "POST", 1)[:len(benchGET)-2] + "Transfer-Encoding: chunked\r\n\r\n" +
			ch(body[:256]) + ch(body[:256]) + ch(body[:256]) + ch(body[:256]) + "0\r\n\r\n",
	}
}

// BenchmarkFramingGuard measures the guard per request: the framer alone over a
// request in one read, the same in 512-byte reads, and through guardConn.Read.
func BenchmarkFramingGuard(b *testing.B) {
	for name, s := range benchStreams() {
		req := []byte(s)
		b.Run(name, func(b *testing.B) {
			f := newFramer(false)
			b.SetBytes(int64(len(req)))
			b.ReportAllocs()
			for b.Loop() {
				if _, at, r := f.scan(req); at >= 0 {
					b.Fatal(r)
				}
			}
		})
		b.Run(name+"/reads-512", func(b *testing.B) {
			f := newFramer(false)
			b.SetBytes(int64(len(req)))
			b.ReportAllocs()
			for b.Loop() {
				for p := req; len(p) > 0; {
					k := min(512, len(p))
					if _, at, r := f.scan(p[:k]); at >= 0 {
						b.Fatal(r)
					}
					p = p[k:]
				}
			}
		})
		b.Run(name+"/conn", func(b *testing.B) {
			g := newGuardConn(&Server{}, &replayConn{data: req}, false, true)
			buf := make([]byte, 4096)
			b.SetBytes(int64(len(req)))
			b.ReportAllocs()
			for b.Loop() {
				for n := 0; n < len(req); {
					k, err := g.Read(buf[:min(len(buf), len(req)-n)])
					if err != nil {
						b.Fatal(err)
					}
					n += k
				}
			}
		})
	}
}

// replayConn returns data over and over.
type replayConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *replayConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// BenchmarkServerHTTP1 measures one keep-alive HTTP/1.1 request through a Server
// over loopback, with the framing guard and without it, from a client that
// writes a fixed request and reads a fixed-size response (no client allocations).
func BenchmarkServerHTTP1(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Length"] = []string{"2"}
		io.WriteString(w, "ok")
	})
	for _, guard := range []bool{true, false} {
		b.Run(map[bool]string{true: "guard", false: "noguard"}[guard], func(b *testing.B) {
			s, err := New("bench", config.ListenerSpec{Address: "127.0.0.1:0"}, h, Options{})
			if err != nil {
				b.Fatal(err)
			}
			s.noScan = !guard
			if err := s.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				s.Shutdown(ctx)
			}()
			c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := []byte(benchGET)
			// The response has a fixed size: learn it from the first one.
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(req)
			buf := make([]byte, 4096)
			n, err := c.Read(buf)
			if err != nil || !bytes.HasSuffix(buf[:n], []byte("\r\n\r\nok")) {
				b.Fatalf("first response %q, %v", buf[:n], err)
			}
			size := n
			c.SetDeadline(time.Time{})
			b.SetBytes(int64(len(req)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf[:size]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNormalize(b *testing.B) {
	n := NewPathNormalizer(config.PathPolicy{})
	for _, p := range []string{"/api/v1/users/12345/orders/67890/items", "/api/v1/./users//12345/../%2e%2E/orders/%7Ebob"} {
		b.Run(fmt.Sprintf("len%d", len(p)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				n.Normalize(p)
			}
		})
	}
}
