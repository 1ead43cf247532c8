package h1_test

import (
	"bufio"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/listener/h1"
)

// A client that closes its connection while the handler waits without reading
// or writing is noticed by the watcher: the request's context is canceled.
func TestWatchClientGone(t *testing.T) {
	started := make(chan struct{})
	canceled := make(chan time.Duration, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		t0 := time.Now()
		select {
		case <-r.Context().Done():
			canceled <- time.Since(t0)
		case <-time.After(5 * time.Second):
			canceled <- -1
		}
	})
	before := h1.WatchStarts()
	cl := serveOne(t, h, &h1.Options{ReadHeaderTimeout: time.Second, IdleTimeout: time.Second}, nil)
	io.WriteString(cl, get("/"))
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("handler not started")
	}
	cl.Close()
	d := <-canceled
	if d < 0 || d > time.Second {
		t.Fatalf("context canceled after %v (-1: not within 5s)", d)
	}
	if h1.WatchStarts() == before {
		t.Error("no watcher started")
	}
}

// Pipelined requests behind a slow handler: the watcher reads the first byte of
// the next request and hands it back; both responses arrive, in order.
func TestWatchPipelined(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
				t.Error("slow request canceled")
			}
		}
		io.WriteString(w, "path="+r.URL.Path)
	})
	for _, wait := range []time.Duration{0, 250 * time.Millisecond} {
		before := h1.WatchStarts()
		cl := serveOne(t, h, &h1.Options{ReadHeaderTimeout: time.Second, IdleTimeout: time.Second}, nil)
		if wait == 0 {
			// Both at once: the second is buffered, no watcher is needed.
			io.WriteString(cl, get("/slow")+get("/next"))
		} else {
			// The second arrives while the watcher reads.
			io.WriteString(cl, get("/slow"))
			time.Sleep(wait)
			io.WriteString(cl, get("/next"))
		}
		br := bufio.NewReader(cl)
		for _, want := range []string{"path=/slow", "path=/next"} {
			if resp, b := readResp(t, br, "GET"); resp.StatusCode != 200 || b != want {
				t.Fatalf("wait %v: got %d %q, want %q", wait, resp.StatusCode, b, want)
			}
		}
		// The connection is still usable.
		io.WriteString(cl, get("/third"))
		if _, b := readResp(t, br, "GET"); b != "path=/third" {
			t.Fatalf("wait %v: third response %q", wait, b)
		}
		if started := h1.WatchStarts() - before; wait > 0 && started == 0 {
			t.Errorf("wait %v: no watcher started", wait)
		}
	}
}

// A fast handler starts no watcher.
func TestWatchNotStartedForFastHandler(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	before := h1.WatchStarts()
	cl := serveOne(t, h, &h1.Options{ReadHeaderTimeout: time.Second, IdleTimeout: time.Second}, nil)
	br := bufio.NewReader(cl)
	for i := 0; i < 50; i++ {
		io.WriteString(cl, get("/"))
		if _, b := readResp(t, br, "GET"); b != "ok" {
			t.Fatalf("body %q", b)
		}
	}
	time.Sleep(300 * time.Millisecond) // past WatchAfter: a timer left armed would fire
	if n := h1.WatchStarts() - before; n != 0 {
		t.Errorf("%d watchers started for fast requests", n)
	}
}

// A body the handler reads slowly is not disturbed by the watcher, and the
// watcher works once the body is read.
func TestWatchSlowBody(t *testing.T) {
	waited := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var got []byte
		buf := make([]byte, 3)
		for {
			n, err := r.Body.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Errorf("body read: %v", err)
				return
			}
			time.Sleep(60 * time.Millisecond)
		}
		if r.URL.Path == "/wait" {
			select {
			case <-r.Context().Done():
				waited <- nil
			case <-time.After(5 * time.Second):
				waited <- io.ErrNoProgress
			}
			return
		}
		io.WriteString(w, "got="+string(got))
	})
	cl := serveOne(t, h, &h1.Options{ReadHeaderTimeout: time.Second, IdleTimeout: time.Second}, nil)
	body := "hello, slow world"
	io.WriteString(cl, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n")
	for i := 0; i < len(body); i += 4 {
		time.Sleep(70 * time.Millisecond)
		io.WriteString(cl, body[i:min(i+4, len(body))])
	}
	br := bufio.NewReader(cl)
	if resp, b := readResp(t, br, "POST"); resp.StatusCode != 200 || b != "got="+body {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
	// Chunked, with a pause longer than WatchAfter inside the body.
	io.WriteString(cl, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n")
	time.Sleep(250 * time.Millisecond)
	io.WriteString(cl, "0\r\n\r\n")
	if resp, b := readResp(t, br, "POST"); resp.StatusCode != 200 || b != "got=abcde" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
	// A slowly read body, then the client leaves while the handler waits:
	// the watcher, armed at the body's end, notices.
	io.WriteString(cl, "POST /wait HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab")
	time.Sleep(100 * time.Millisecond)
	io.WriteString(cl, "cde")
	time.Sleep(100 * time.Millisecond)
	cl.Close()
	if err := <-waited; err != nil {
		t.Fatal("context not canceled after the client left")
	}
}
