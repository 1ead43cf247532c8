package h1_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// testHandler is served by both servers of the differential test; each path
// exercises one part of the ResponseWriter contract.
func testHandler() http.Handler {
	kib := strings.Repeat("0123456789abcdef", 64)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/hello", "/probe":
			io.WriteString(w, "hello world")
		case "/1k":
			io.WriteString(w, kib)
		case "/echo":
			b, err := io.ReadAll(r.Body)
			h.Set("X-Len", fmt.Sprint(len(b)))
			h.Set("X-Err", fmt.Sprint(err))
			for k, v := range r.Trailer {
				h.Set("X-Req-Trailer-"+k, strings.Join(v, ","))
			}
			w.Write(b)
		case "/readsome":
			b := make([]byte, 10)
			n, _ := io.ReadFull(r.Body, b)
			fmt.Fprintf(w, "read %d", n)
		case "/noread":
			io.WriteString(w, "ok")
		case "/info":
			fmt.Fprintf(w, "method=%s host=%s uri=%s url=%s proto=%s remote=%v tls=%v ctx=%v cl=%d te=%v close=%v hosthdr=%q",
				r.Method, r.Host, r.RequestURI, r.URL, r.Proto, r.RemoteAddr != "", r.TLS != nil, r.Context().Err(),
				r.ContentLength, r.TransferEncoding, r.Close, r.Header.Get("Host"))
		case "/cl":
			h.Set("Content-Length", "5")
			io.WriteString(w, "hello")
		case "/cl-short":
			h.Set("Content-Length", "10")
			io.WriteString(w, "hello")
		case "/cl-long":
			h.Set("Content-Length", "5")
			_, err := io.WriteString(w, "hello world")
			if err != http.ErrContentLength {
				panic(fmt.Sprintf("writing past Content-Length: %v", err))
			}
		case "/stream":
			for i := 0; i < 64; i++ {
				io.WriteString(w, kib)
			}
		case "/big":
			io.WriteString(w, strings.Repeat(kib, 100))
		case "/flush":
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		case "/rc-flush":
			io.WriteString(w, "a")
			if err := http.NewResponseController(w).Flush(); err != nil {
				panic(err)
			}
			io.WriteString(w, "b")
		case "/trailer":
			h.Set("Trailer", "X-T1, X-T2")
			h.Add("Trailer", "Expect") // not allowed in trailers (RFC 9110 §6.5.1): not sent
			h.Set("Expect", "x")
			h.Set("Content-Type", "text/plain")
			w.WriteHeader(200)
			h.Set("X-T1", "one")
			io.WriteString(w, "body")
			h.Set("X-T2", "two")
		case "/trailer-prefix":
			h.Set(http.TrailerPrefix+"X-P0", "early")
			io.WriteString(w, "body")
			h.Set(http.TrailerPrefix+"X-P1", "late")
		case "/trailer-prefix-late":
			io.WriteString(w, "body")
			h.Set(http.TrailerPrefix+"X-P1", "late")
		case "/204":
			w.WriteHeader(204)
			if _, err := io.WriteString(w, "x"); err != http.ErrBodyNotAllowed {
				panic(err)
			}
		case "/304":
			h.Set("Content-Type", "text/html")
			h.Set("ETag", `"x"`)
			w.WriteHeader(304)
		case "/close":
			h.Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/keep-alive-hdr":
			h.Set("Connection", "keep-alive")
			io.WriteString(w, "ka")
		case "/panic-abort":
			panic(http.ErrAbortHandler)
		case "/panic-abort-flushed":
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "/103":
			h.Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(103)
			h.Set("Content-Type", "text/plain")
			io.WriteString(w, "done")
		case "/empty":
		case "/head-cl":
			h.Set("Content-Length", "1234")
		case "/html":
			io.WriteString(w, "<html><body>hi</body></html>")
		case "/ce":
			h.Set("Content-Encoding", "gzip")
			w.Write([]byte{0x1f, 0x8b, 8, 0})
		case "/status-299":
			w.WriteHeader(299)
			io.WriteString(w, "odd")
		case "/split":
			h.Set("X-Bad", "a\r\nInjected: yes")
			h.Set("Bad Name", "v")
			io.WriteString(w, "ok")
		case "/error":
			http.Error(w, "nope", http.StatusForbidden)
		case "/te-identity":
			h.Set("Transfer-Encoding", "identity")
			io.WriteString(w, "sse-like")
		default:
			http.NotFound(w, r)
		}
	})
}

type diffCase struct {
	name  string
	steps []step
	// serverErr: the server refuses the request itself; only the status and
	// the close are compared (h1's error responses carry a Content-Length).
	serverErr bool
	want      int // status of the last response, checked on both servers (0: no response)
}

func get(path string, extra ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: example.com\r\n" + strings.Join(extra, "") + "\r\n"
}

func one(req, method string) []step { return []step{{send: req, methods: []string{method}}} }

func diffCases() []diffCase {
	big := strings.Repeat("x", 1<<20)
	manyHeaders := strings.Repeat("X-A: 1\r\n", 30)
	hugeHeader := "X-Big: " + strings.Repeat("a", 20<<10) + "\r\n"
	return []diffCase{
		{name: "GET", steps: one(get("/hello"), "GET"), want: 200},
		{name: "GET 1 KiB", steps: one(get("/1k"), "GET"), want: 200},
		{name: "HEAD body written", steps: one("HEAD /hello HTTP/1.1\r\nHost: h\r\n\r\n", "HEAD"), want: 200},
		{name: "HEAD Content-Length kept", steps: one("HEAD /head-cl HTTP/1.1\r\nHost: h\r\n\r\n", "HEAD"), want: 200},
		{name: "HEAD nothing written", steps: one("HEAD /empty HTTP/1.1\r\nHost: h\r\n\r\n", "HEAD"), want: 200},
		{name: "HEAD large", steps: one("HEAD /stream HTTP/1.1\r\nHost: h\r\n\r\n", "HEAD"), want: 200},
		{name: "POST Content-Length", steps: one("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello there", "POST"), want: 200},
		{name: "POST chunked with trailer", steps: one("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n there\r\n0\r\nX-Sum: 42\r\n\r\n", "POST"), want: 200},
		{name: "POST chunked undeclared trailer", steps: one("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Late: 1\r\n\r\n", "POST"), want: 200},
		{name: "Expect 100-continue read", steps: []step{
			{send: "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", interim: 1},
			{send: "hello", methods: []string{"POST"}},
		}, want: 200},
		{name: "Expect 100-continue chunked", steps: []step{
			{send: "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-Continue\r\n\r\n", interim: 1},
			{send: "5\r\nhello\r\n0\r\n\r\n", methods: []string{"POST"}},
		}, want: 200},
		{name: "Expect 100-continue not read", steps: one("POST /noread HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", "POST"), want: 200},
		{name: "Expect unknown", steps: one("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: teapot\r\n\r\nhi", "POST"), want: 417},
		{name: "pipelined", steps: []step{{send: get("/hello") + get("/cl") + "HEAD /1k HTTP/1.1\r\nHost: h\r\n\r\n" + get("/flush"), methods: []string{"GET", "GET", "HEAD", "GET"}}}, want: 200},
		{name: "pipelined POST then GET", steps: []step{{send: "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" + get("/hello"), methods: []string{"POST", "GET"}}}, want: 200},
		{name: "CRLF after POST", steps: []step{{send: "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\r\n" + get("/hello"), methods: []string{"POST", "GET"}}}, want: 200},
		{name: "CRLF before first request", steps: one("\r\n"+get("/hello"), "GET"), serverErr: true, want: 400},
		{name: "HTTP/1.0", steps: one("GET /hello HTTP/1.0\r\n\r\n", "GET"), want: 200},
		{name: "HTTP/1.0 keep-alive", steps: one("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET"), want: 200},
		{name: "HTTP/1.0 keep-alive stream", steps: one("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET"), want: 200},
		{name: "HTTP/1.0 keep-alive flush", steps: one("GET /flush HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET"), want: 200},
		{name: "HTTP/1.0 keep-alive Content-Length", steps: one("GET /cl HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET"), want: 200},
		{name: "HTTP/1.0 Expect ignored", steps: one("POST /echo HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi", "POST"), want: 200},
		{name: "Connection close from client", steps: one(get("/hello", "Connection: close\r\n"), "GET"), want: 200},
		{name: "Connection close from handler", steps: one(get("/close"), "GET"), want: 200},
		{name: "Connection keep-alive from handler", steps: one(get("/keep-alive-hdr"), "GET"), want: 200},
		{name: "handler Content-Length", steps: one(get("/cl"), "GET"), want: 200},
		{name: "handler Content-Length short", steps: one(get("/cl-short"), "GET"), want: 200},
		{name: "handler Content-Length exceeded", steps: one(get("/cl-long"), "GET"), want: 200},
		{name: "streaming chunked", steps: one(get("/stream"), "GET"), want: 200},
		{name: "one large write", steps: one(get("/big"), "GET"), want: 200},
		{name: "flush", steps: one(get("/flush"), "GET"), want: 200},
		{name: "ResponseController flush", steps: one(get("/rc-flush"), "GET"), want: 200},
		{name: "trailers announced", steps: one(get("/trailer"), "GET"), want: 200},
		{name: "trailers prefix", steps: one(get("/trailer-prefix"), "GET"), want: 200},
		{name: "trailers prefix late", steps: one(get("/trailer-prefix-late"), "GET"), want: 200},
		{name: "trailers HTTP/1.0", steps: one("GET /trailer HTTP/1.0\r\n\r\n", "GET"), want: 200},
		{name: "204", steps: one(get("/204"), "GET"), want: 204},
		{name: "304", steps: one(get("/304"), "GET"), want: 304},
		{name: "103 early hints", steps: one(get("/103"), "GET"), want: 200},
		{name: "empty body", steps: one(get("/empty"), "GET"), want: 200},
		{name: "sniffed html", steps: one(get("/html"), "GET"), want: 200},
		{name: "Content-Encoding not sniffed", steps: one(get("/ce"), "GET"), want: 200},
		{name: "unknown status", steps: one(get("/status-299"), "GET"), want: 299},
		{name: "response splitting", steps: one(get("/split"), "GET"), want: 200},
		{name: "http.Error", steps: one(get("/error"), "GET"), want: 403},
		{name: "Transfer-Encoding identity", steps: one(get("/te-identity"), "GET"), want: 200},
		{name: "OPTIONS *", steps: one("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS"), want: 200},
		{name: "absolute-form", steps: one("GET http://other.example:8080/info?q=1 HTTP/1.1\r\nHost: ignored.example\r\n\r\n", "GET"), want: 200},
		{name: "absolute-form without Host", steps: one("GET http://other.example/info HTTP/1.1\r\n\r\n", "GET"), serverErr: true, want: 400},
		{name: "absolute-form bad Host", steps: one("GET http://other.example/info HTTP/1.1\r\nHost: a b\r\n\r\n", "GET"), serverErr: true, want: 400},
		{name: "request info", steps: one(get("/info?x=%20y"), "GET"), want: 200},
		{name: "empty Host", steps: one("GET /info HTTP/1.1\r\nHost:\r\n\r\n", "GET"), want: 200},
		{name: "obs-fold Host", steps: one("GET /info HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", "GET"), serverErr: true, want: 400},
		{name: "obs-fold Host after empty", steps: one("GET /info HTTP/1.1\r\nHost:\r\n b.example\r\n\r\n", "GET"), want: 200},
		{name: "obs-fold other field", steps: one("GET /info HTTP/1.1\r\nHost: h\r\nX-F: a\r\n b\r\n\r\n", "GET"), want: 200},
		{name: "bare LF", steps: one("GET /info HTTP/1.1\nHost: h\n\n", "GET"), want: 200},
		{name: "missing Host", steps: one("GET /hello HTTP/1.1\r\n\r\n", "GET"), serverErr: true, want: 400},
		{name: "HTTP/1.0 without Host", steps: one("GET /info HTTP/1.0\r\n\r\n", "GET"), want: 200},
		{name: "two Hosts", steps: one("GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "GET"), serverErr: true, want: 400},
		{name: "bad request line", steps: one("GARBAGE\r\n\r\n", "GET"), serverErr: true, want: 400},
		{name: "bad method", steps: one("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", "GET"), serverErr: true, want: 400},
		{name: "bad version", steps: one("GET / HTTP/x.y\r\nHost: h\r\n\r\n", "GET"), serverErr: true, want: 400},
		{name: "HTTP/2.0", steps: one("GET / HTTP/2.0\r\nHost: h\r\n\r\n", "GET"), serverErr: true, want: 505},
		{name: "HTTP/0.9", steps: one("GET / HTTP/0.9\r\nHost: h\r\n\r\n", "GET"), serverErr: true, want: 505},
		{name: "header without colon", steps: one("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", "GET"), serverErr: true, want: 400},
		{name: "header name with space", steps: one("GET / HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n", "GET"), serverErr: true, want: 400},
		{name: "header value control", steps: one("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", "GET"), serverErr: true, want: 400},
		{name: "bad Content-Length", steps: one("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", "POST"), serverErr: true, want: 400},
		{name: "two Content-Lengths", steps: one("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "POST"), serverErr: true, want: 400},
		{name: "Transfer-Encoding gzip", steps: one("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", "POST"), serverErr: true, want: 501},
		{name: "two Transfer-Encodings", steps: one("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "POST"), serverErr: true, want: 501},
		{name: "chunked and Content-Length", steps: one("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "POST"), want: 200},
		{name: "bad chunk size", steps: one("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "POST"), want: 200},
		{name: "oversized head", steps: one(get("/hello", hugeHeader), "GET"), serverErr: true, want: 431},
		{name: "too many headers", steps: one(get("/hello", manyHeaders), "GET"), serverErr: true, want: 431},
		{name: "panic ErrAbortHandler", steps: one(get("/panic-abort"), "GET")},
		{name: "panic ErrAbortHandler after flush", steps: one(get("/panic-abort-flushed"), "GET"), want: 200},
		{name: "unread small body", steps: one("POST /noread HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n"+big[:1000], "POST"), want: 200},
		{name: "unread small chunked body", steps: one("POST /noread HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"+big[:1000]+"\r\n0\r\n\r\n", "POST"), want: 200},
		{name: "partly read body", steps: one("POST /readsome HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n"+big[:100], "POST"), want: 200},
		{name: "unread large body", steps: one("POST /noread HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n"+big, "POST"), want: 200},
		{name: "unread large chunked body", steps: one("POST /noread HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n"+big+"\r\n0\r\n\r\n", "POST"), want: 200},
		{name: "GET with body", steps: one("GET /hello HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody", "GET"), want: 200},
	}
}

func TestDifferential(t *testing.T) {
	h := testHandler()
	a := startNetHTTP(t, h, defaultLimits)
	b := startH1(t, h, defaultLimits, nil)
	cases := diffCases()
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ref := exchange(t, a.addr, tc.steps, true)
			got := exchange(t, b.addr, tc.steps, true)
			if tc.serverErr {
				ref, got = statusOnly(ref), statusOnly(got)
			}
			if testing.Verbose() {
				t.Logf("net/http:\n%s\nh1:\n%s", ref, got)
			}
			if ref.String() != got.String() {
				t.Errorf("net/http:\n%s\nh1:\n%s", ref, got)
			}
			for name, o := range map[string]outcome{"net/http": ref, "h1": got} {
				st := 0
				if n := len(o.Resps); n > 0 {
					st = o.Resps[n-1].Status
				}
				if st != tc.want {
					t.Errorf("%s: last status %d, want %d\n%s", name, st, tc.want, o)
				}
			}
		})
	}
}

func statusOnly(o outcome) outcome {
	for i := range o.Resps {
		o.Resps[i] = seen{Status: o.Resps[i].Status}
	}
	return o
}
