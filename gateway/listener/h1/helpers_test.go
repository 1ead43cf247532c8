package h1_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/listener/h1"
)

// limits are given to both servers of a differential test.
type limits struct {
	maxHeaderBytes    int
	maxHeaders        int
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
}

var defaultLimits = limits{maxHeaderBytes: 4096, maxHeaders: 20, readHeaderTimeout: 2 * time.Second, idleTimeout: 5 * time.Second}

// server is a loopback listener serving with h1.ServeConn or net/http.
type server struct {
	addr    string
	accepts atomic.Int64
	events  *eventLog
}

type eventLog struct {
	mu    sync.Mutex
	kinds []string
}

func (e *eventLog) add(kind, _ string) {
	e.mu.Lock()
	e.kinds = append(e.kinds, kind)
	e.mu.Unlock()
}

func (e *eventLog) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.kinds...)
}

// countingListener counts accepted connections (keep-alive reuse).
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startH1 serves h with ServeConn, one goroutine per connection; the cleanup
// closes the listener and every connection and waits for ServeConn to return.
func startH1(t testing.TB, h http.Handler, l limits, logger *slog.Logger) *server {
	t.Helper()
	s := &server{events: &eventLog{}}
	ln := listen(t)
	s.addr = ln.Addr().String()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	opts := &h1.Options{
		MaxHeaderBytes: l.maxHeaderBytes, MaxHeaders: l.maxHeaders,
		ReadHeaderTimeout: l.readHeaderTimeout, IdleTimeout: l.idleTimeout,
		OnError: s.events.add, Logger: logger,
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				h1.ServeConn(c, h, opts)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		waitGroup(t, &wg, 5*time.Second, "ServeConn did not return after its connection was closed")
	})
	return s
}

// startNetHTTP serves h with net/http's server, wrapped in the header count
// check that gateway/listener adds in front of the core (431 and close), so
// that both servers are the gateway's behaviour before and after the change.
func startNetHTTP(t testing.TB, h http.Handler, l limits) *server {
	t.Helper()
	s := &server{}
	ln := listen(t)
	s.addr = ln.Addr().String()
	max := l.maxHeaders
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n := headerLines(r); max > 0 && n > max {
				w.Header().Set("Connection", "close")
				http.Error(w, "Request Header Fields Too Large", http.StatusRequestHeaderFieldsTooLarge)
				return
			}
			h.ServeHTTP(w, r)
		}),
		MaxHeaderBytes: l.maxHeaderBytes, ReadHeaderTimeout: l.readHeaderTimeout, IdleTimeout: l.idleTimeout,
		ErrorLog: log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(countingListener{ln, &s.accepts})
	}()
	t.Cleanup(func() {
		hs.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("net/http server did not stop")
		}
	})
	return s
}

func headerLines(r *http.Request) int {
	n := len(r.TransferEncoding)
	if r.Host != "" {
		n++
	}
	for _, v := range r.Header {
		n += len(v)
	}
	return n
}

func waitGroup(t testing.TB, wg *sync.WaitGroup, d time.Duration, msg string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Error(msg)
	}
}

// step is one write of a raw client, followed by reading responses.
type step struct {
	send    string
	interim int      // 1xx responses to read first, each on its own
	methods []string // one per final (non-1xx) response to read after the write
}

// seen is what a raw client observes of one response, normalised so that the
// two servers can be compared: the headers that matter, the framing, the body
// as decoded, trailers.
type seen struct {
	Proto   string
	Status  int
	Header  string // selected fields, sorted
	Framing string // "length N", "chunked", "close", "none"
	Body    string
	BodyErr bool
	Trailer string
	Close   bool // Connection: close (which http.ReadResponse removes from the header)
}

type outcome struct {
	Resps  []seen
	Closed bool   // the server closed the connection after the last response
	Err    string // reading a response failed before the expected count
}

func (o outcome) String() string {
	var b strings.Builder
	for _, r := range o.Resps {
		body := r.Body
		if len(body) > 80 {
			body = fmt.Sprintf("%.40q...(%d bytes)", body, len(body))
		} else {
			body = strconv.Quote(body)
		}
		fmt.Fprintf(&b, "  %s %d [%s] close=%v framing=%s body=%s bodyErr=%v trailer=[%s]\n",
			r.Proto, r.Status, r.Header, r.Close, r.Framing, body, r.BodyErr, r.Trailer)
	}
	fmt.Fprintf(&b, "  closed=%v err=%q", o.Closed, o.Err)
	return b.String()
}

var shownHeaders = []string{"Content-Type", "Content-Length", "Connection", "Trailer", "Link", "Content-Encoding", "Allow"}

func summarise(resp *http.Response, body []byte, bodyErr error) seen {
	s := seen{Proto: resp.Proto, Status: resp.StatusCode, Body: string(body), BodyErr: bodyErr != nil, Close: resp.Close}
	var fields []string
	for k, vv := range resp.Header {
		show := strings.HasPrefix(k, "X-")
		for _, sh := range shownHeaders {
			show = show || k == sh
		}
		if k == "Date" {
			fields = append(fields, "Date:present")
			continue
		}
		if show {
			fields = append(fields, k+":"+strings.ToLower(strings.Join(vv, ",")))
		}
	}
	sort.Strings(fields)
	s.Header = strings.Join(fields, " ")
	switch {
	case len(resp.TransferEncoding) > 0:
		s.Framing = strings.Join(resp.TransferEncoding, ",")
	case resp.StatusCode/100 == 1 || resp.StatusCode == 204 || resp.StatusCode == 304 || resp.Request.Method == "HEAD":
		s.Framing = "none"
	case resp.ContentLength >= 0:
		s.Framing = "length " + strconv.FormatInt(resp.ContentLength, 10)
	default:
		s.Framing = "close"
	}
	var tr []string
	for k, vv := range resp.Trailer {
		tr = append(tr, k+":"+strings.Join(vv, ","))
	}
	sort.Strings(tr)
	s.Trailer = strings.Join(tr, " ")
	return s
}

const probe = "GET /probe HTTP/1.1\r\nHost: probe\r\n\r\n"

// exchange plays steps on a new connection to addr, then (if probeAfter) sends
// one more request to learn whether the server kept the connection. Every
// read and write is under one overall deadline.
func exchange(t testing.TB, addr string, steps []step, probeAfter bool) outcome {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var o outcome
	var writers sync.WaitGroup
	defer writers.Wait()
	for _, st := range steps {
		// Written concurrently: a server may answer before it has read all
		// of a large body (and never read the rest).
		writers.Add(1)
		go func(p string) {
			defer writers.Done()
			io.WriteString(c, p)
		}(st.send)
		for range st.interim {
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				o.Err, o.Closed = readErr(err), true
				return o
			}
			o.Resps = append(o.Resps, summarise(resp, nil, nil))
		}
		for _, m := range st.methods {
			for {
				resp, err := http.ReadResponse(br, &http.Request{Method: m})
				if err != nil {
					o.Err, o.Closed = readErr(err), true
					return o
				}
				body, berr := io.ReadAll(resp.Body)
				o.Resps = append(o.Resps, summarise(resp, body, berr))
				if berr != nil {
					o.Closed = true
					return o
				}
				if resp.StatusCode/100 != 1 || resp.StatusCode == 101 {
					break
				}
			}
		}
		writers.Wait()
	}
	if probeAfter {
		io.WriteString(c, probe)
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			o.Closed = true
			return o
		}
		io.ReadAll(resp.Body)
	}
	return o
}

func readErr(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "error"
	}
}

// waitClosed reads from c until the server closes it or d passes; it returns
// the bytes read and whether the close came in time.
func waitClosed(c net.Conn, d time.Duration) (string, bool) {
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(b), false
	}
	return string(b), true
}

func ctxWithTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
