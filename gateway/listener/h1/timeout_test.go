package h1_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTimeouts runs the same slow clients against both servers.
func TestTimeouts(t *testing.T) {
	l := limits{maxHeaderBytes: 4096, readHeaderTimeout: 300 * time.Millisecond, idleTimeout: 400 * time.Millisecond}
	h := testHandler()
	servers := map[string]*server{"net/http": startNetHTTP(t, h, l), "h1": startH1(t, h, l, nil)}
	for name, s := range servers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dial := func() net.Conn {
				c, err := net.Dial("tcp", s.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			t.Run("idle", func(t *testing.T) {
				c := dial()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, get("/hello"))
				readResp(t, bufio.NewReader(c), "GET")
				start := time.Now()
				if _, ok := waitClosed(c, 3*time.Second); !ok {
					t.Fatal("idle connection not closed")
				}
				if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
					t.Errorf("idle connection closed after %v, want ~400ms", d)
				}
			})
			t.Run("nothing sent", func(t *testing.T) {
				c := dial()
				if b, ok := waitClosed(c, 3*time.Second); !ok || b != "" {
					t.Errorf("silent connection: closed=%v, got %q", ok, b)
				}
			})
			t.Run("partial head", func(t *testing.T) {
				c := dial()
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n")
				if b, ok := waitClosed(c, 3*time.Second); !ok || b != "" {
					t.Errorf("partial head: closed=%v, got %q", ok, b)
				}
			})
			t.Run("slowloris", func(t *testing.T) {
				c := dial()
				start := time.Now()
				closed := make(chan struct{})
				go func() {
					defer close(closed)
					waitClosed(c, 5*time.Second)
				}()
				req := get("/hello", strings.Repeat("X-Slow: 1\r\n", 50))
			loop:
				for i := 0; i < len(req); i++ {
					select {
					case <-closed:
						break loop
					case <-time.After(20 * time.Millisecond):
					}
					c.Write([]byte{req[i]})
				}
				<-closed
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("slowloris held the connection for %v", d)
				}
			})
			t.Run("slow head after idle", func(t *testing.T) {
				// The read-header timeout starts at the head's first byte, not
				// at the end of the previous response.
				c := dial()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				io.WriteString(c, get("/hello"))
				readResp(t, br, "GET")
				time.Sleep(250 * time.Millisecond) // within the idle timeout
				io.WriteString(c, "GET /hello HTTP/1.1\r\n")
				time.Sleep(200 * time.Millisecond) // 450ms after the response, 200ms into the head
				io.WriteString(c, "Host: h\r\n\r\n")
				if resp, _ := readResp(t, br, "GET"); resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
				}
			})
		})
	}
}

// A slow upload is not cut by the read-header or idle deadlines.
func TestSlowUpload(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d %v", n, err)
	})
	s := startH1(t, h, limits{readHeaderTimeout: 100 * time.Millisecond, idleTimeout: 150 * time.Millisecond}, nil)
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for round := 0; round < 2; round++ {
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := 0; i < 5; i++ {
			time.Sleep(80 * time.Millisecond)
			io.WriteString(c, "3\r\nabc\r\n")
		}
		io.WriteString(c, "0\r\n\r\n")
		if _, b := readResp(t, br, "POST"); b != "15 <nil>" {
			t.Fatalf("round %d: %q", round, b)
		}
	}
}
