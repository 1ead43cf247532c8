package headers_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// seen is what the terminal handler observed of the request it got.
type seen struct {
	header http.Header
}

// chain builds the filter from cfg and folds it around a terminal handler that
// records the request's headers and then runs respond (if any).
func chain(t testing.TB, cfg string, respond func(w http.ResponseWriter)) (filter.Handler, *seen) {
	t.Helper()
	f := mustBuild(t, cfg)
	s := &seen{}
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		s.header = r.Header.Clone()
		if respond != nil {
			respond(w)
		}
		return nil
	}))
	return h, s
}

func TestRequestHeaders(t *testing.T) {
	tests := []struct {
		name   string
		cfg    string
		in     http.Header
		want   http.Header // exact values of these names
		absent []string
	}{
		{
			name: "set replaces every value",
			cfg:  "request:\n  set: {X-Env: prod}",
			in:   http.Header{"X-Env": {"dev", "test"}},
			want: http.Header{"X-Env": {"prod"}},
		},
		{
			name: "set creates a missing header",
			cfg:  "request:\n  set: {x-env: prod}",
			want: http.Header{"X-Env": {"prod"}},
		},
		{
			name: "add appends to existing values",
			cfg:  "request:\n  add: {X-Tag: b}",
			in:   http.Header{"X-Tag": {"a"}},
			want: http.Header{"X-Tag": {"a", "b"}},
		},
		{
			name:   "remove deletes every value, case-insensitively",
			cfg:    "request:\n  remove: [x-debug, X-Internal-Token]",
			in:     http.Header{"X-Debug": {"1", "2"}, "X-Internal-Token": {"s"}, "X-Keep": {"k"}},
			want:   http.Header{"X-Keep": {"k"}},
			absent: []string{"X-Debug", "X-Internal-Token"},
		},
		{
			name: "variables are expanded",
			cfg:  "request:\n  set:\n    X-Client: \"%{client_ip}\"\n    X-Orig: \"%{method} %{scheme}://%{host}%{path}\"",
			want: http.Header{"X-Client": {"192.0.2.7"}, "X-Orig": {"GET http://api.example.com:8080/a%20b/c"}},
		},
		{
			name: "percent escapes",
			cfg:  "request:\n  set: {X-Lit: \"100%% of %%{host} is 50%\"}",
			want: http.Header{"X-Lit": {"100% of %{host} is 50%"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, s := chain(t, tt.cfg, nil)
			r := httptest.NewRequest("GET", "http://api.example.com:8080/a%20b/c", nil)
			r.RemoteAddr = "192.0.2.7:51234"
			for k, v := range tt.in {
				r.Header[k] = slices.Clone(v)
			}
			before := r.Header.Clone()
			if err := h.ServeHTTP(httptest.NewRecorder(), r); err != nil {
				t.Fatalf("ServeHTTP: %v", err)
			}
			for k, v := range tt.want {
				if got := s.header[k]; !slices.Equal(got, v) {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for _, k := range tt.absent {
				if got, ok := s.header[k]; ok {
					t.Errorf("%s = %q, want it removed", k, got)
				}
			}
			// The inbound request is the caller's: it must come back untouched.
			if !equalHeader(r.Header, before) {
				t.Errorf("inbound request headers changed: %v, were %v", r.Header, before)
			}
		})
	}
}

func TestVariables(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(r *http.Request)
		tmpl   string
		expect string
	}{
		{"client ip v4", func(r *http.Request) { r.RemoteAddr = "10.1.2.3:4000" }, "%{client_ip}", "10.1.2.3"},
		{"client ip v6", func(r *http.Request) { r.RemoteAddr = "[2001:db8::1]:4000" }, "%{client_ip}", "2001:db8::1"},
		{"client ip without port", func(r *http.Request) { r.RemoteAddr = "@unix" }, "%{client_ip}", "@unix"},
		{"client ip from the core", func(r *http.Request) {
			*r = *r.WithContext(proxy.WithInfo(r.Context(), &proxy.Info{Forwarding: proxy.Forwarding{
				PeerIP: netip.MustParseAddr("10.0.0.1"), ClientIP: netip.MustParseAddr("::ffff:203.0.113.5"), TrustedPeer: true}}))
			r.RemoteAddr = "10.0.0.1:4000"
		}, "%{client_ip}", "203.0.113.5"},
		{"scheme from the core", func(r *http.Request) {
			*r = *r.WithContext(proxy.WithInfo(r.Context(), &proxy.Info{Forwarding: proxy.Forwarding{Scheme: "https"}}))
		}, "%{scheme}", "https"},
		{"scheme https", func(r *http.Request) { r.TLS = &tls.ConnectionState{} }, "%{scheme}", "https"},
		{"scheme http", func(r *http.Request) {}, "%{scheme}", "http"},
		{"host cleaned of control characters", func(r *http.Request) { r.Host = "evil\r\nX-Injected: 1" }, "h=%{host}", "h=evilX-Injected: 1"},
		{"path stays escaped", func(r *http.Request) { r.URL.Path = "/a\r\nb" }, "%{path}", "/a%0D%0Ab"},
		{"method", func(r *http.Request) { r.Method = "PATCH" }, "<%{method}>", "<PATCH>"},
		{"adjacent variables", func(r *http.Request) { r.Method = "PUT" }, "%{method}%{method}", "PUTPUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, s := chain(t, "request:\n  set: {X-V: \""+tt.tmpl+"\"}", nil)
			r := httptest.NewRequest("GET", "http://example.com/", nil)
			tt.setup(r)
			if err := h.ServeHTTP(httptest.NewRecorder(), r); err != nil {
				t.Fatal(err)
			}
			if got := s.header.Get("X-V"); got != tt.expect {
				t.Errorf("X-V = %q, want %q", got, tt.expect)
			}
		})
	}
}

func TestRequestWithNilHeader(t *testing.T) {
	h, s := chain(t, "request:\n  add: {X-A: a}\n  remove: [X-B]", nil)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header = nil
	if err := h.ServeHTTP(httptest.NewRecorder(), r); err != nil {
		t.Fatal(err)
	}
	if got := s.header.Get("X-A"); got != "a" {
		t.Errorf("X-A = %q, want a", got)
	}
}

func TestResponseHeaders(t *testing.T) {
	cfg := "response:\n  set: {X-Frame-Options: DENY, X-Served-Path: \"%{path}\"}\n  add: {Vary: Origin}\n  remove: [Server, x-powered-by]"
	upstream := func(w http.ResponseWriter) {
		w.Header().Set("Server", "backend/1.0")
		w.Header().Set("X-Powered-By", "php")
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		w.Header().Add("Vary", "Accept-Encoding")
		w.Header().Set("Content-Type", "text/plain")
	}
	tests := []struct {
		name  string
		write func(w http.ResponseWriter)
		code  int
	}{
		{"WriteHeader then Write", func(w http.ResponseWriter) { upstream(w); w.WriteHeader(201); io.WriteString(w, "hi") }, 201},
		{"Write without WriteHeader", func(w http.ResponseWriter) { upstream(w); io.WriteString(w, "hi") }, 200},
		{"WriteHeader twice", func(w http.ResponseWriter) { upstream(w); w.WriteHeader(202); w.WriteHeader(500) }, 202},
		{"Flush first", func(w http.ResponseWriter) { upstream(w); w.(http.Flusher).Flush(); io.WriteString(w, "hi") }, 200},
		{"ResponseController flush", func(w http.ResponseWriter) {
			upstream(w)
			if err := http.NewResponseController(w).Flush(); err != nil {
				w.WriteHeader(599) // fails the status check
			}
		}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := chain(t, cfg, tt.write)
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, httptest.NewRequest("GET", "/x/y", nil)); err != nil {
				t.Fatal(err)
			}
			res := rec.Result()
			if res.StatusCode != tt.code {
				t.Errorf("status %d, want %d", res.StatusCode, tt.code)
			}
			want := http.Header{
				"X-Frame-Options": {"DENY"},
				"X-Served-Path":   {"/x/y"},
				"Vary":            {"Accept-Encoding", "Origin"},
				"Content-Type":    {"text/plain"},
			}
			for k, v := range want {
				if got := res.Header[k]; !slices.Equal(got, v) {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for _, k := range []string{"Server", "X-Powered-By"} {
				if got, ok := res.Header[k]; ok {
					t.Errorf("%s = %q, want it removed", k, got)
				}
			}
		})
	}
}

// statusLog records the header map as it was at each WriteHeader call, and offers
// SetWriteDeadline to check that http.ResponseController reaches it through Unwrap.
type statusLog struct {
	h         http.Header
	snapshots []http.Header
	codes     []int
	deadline  time.Time
}

func (s *statusLog) Header() http.Header         { return s.h }
func (s *statusLog) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusLog) WriteHeader(code int) {
	s.codes = append(s.codes, code)
	s.snapshots = append(s.snapshots, s.h.Clone())
}
func (s *statusLog) SetWriteDeadline(t time.Time) error { s.deadline = t; return nil }

func TestInformationalResponses(t *testing.T) {
	h, _ := chain(t, "response:\n  add: {X-Add: once}", func(w http.ResponseWriter) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusOK)
	})
	sl := &statusLog{h: http.Header{}}
	if err := h.ServeHTTP(sl, httptest.NewRequest("GET", "/", nil)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sl.codes, []int{103, 200}) {
		t.Fatalf("codes %v, want [103 200]", sl.codes)
	}
	if got := sl.snapshots[0]["X-Add"]; got != nil {
		t.Errorf("103 carried X-Add %q; changes are for the final response", got)
	}
	if got := sl.snapshots[1]["X-Add"]; !slices.Equal(got, []string{"once"}) {
		t.Errorf("200 carried X-Add %q, want exactly [once]", got)
	}
}

func TestResponseControllerUnwrap(t *testing.T) {
	when := time.Unix(1700000000, 0)
	var ctlErr error
	h, _ := chain(t, "response:\n  set: {X-A: a}", func(w http.ResponseWriter) {
		ctlErr = http.NewResponseController(w).SetWriteDeadline(when)
	})
	sl := &statusLog{h: http.Header{}}
	if err := h.ServeHTTP(sl, httptest.NewRequest("GET", "/", nil)); err != nil {
		t.Fatal(err)
	}
	if ctlErr != nil {
		t.Fatalf("SetWriteDeadline did not reach the server's writer through Unwrap: %v", ctlErr)
	}
	if !sl.deadline.Equal(when) {
		t.Errorf("deadline %v, want %v", sl.deadline, when)
	}
}

// TestOverHTTP runs the filter behind a real server, with a streamed response that
// flushes before writing, and with many concurrent requests on one filter (run the
// tests with -race).
func TestOverHTTP(t *testing.T) {
	f := mustBuild(t, "request:\n  set: {X-Client: \"%{client_ip}\"}\nresponse:\n  set: {Cache-Control: no-store}\n  remove: [Server]")
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Server", "leaky")
		w.Header().Set("X-Echo-Client", r.Header.Get("X-Client"))
		w.(http.Flusher).Flush()
		io.WriteString(w, "streamed")
		return nil
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.ServeHTTP(w, r); err != nil {
			http.Error(w, err.Error(), 500)
		}
	}))
	defer srv.Close()
	client := &http.Client{Timeout: 10 * time.Second}

	const n = 32
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for range n {
		wg.Go(func() {
			res, err := client.Get(srv.URL + "/")
			if err != nil {
				errs <- err.Error()
				return
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			switch {
			case string(body) != "streamed":
				errs <- "body " + string(body)
			case res.Header.Get("Cache-Control") != "no-store":
				errs <- "Cache-Control " + res.Header.Get("Cache-Control")
			case res.Header.Get("Server") != "":
				errs <- "Server " + res.Header.Get("Server")
			case res.Header.Get("X-Echo-Client") != "127.0.0.1":
				errs <- "X-Echo-Client " + res.Header.Get("X-Echo-Client")
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []string
	for e := range errs {
		all = append(all, e)
	}
	if len(all) > 0 {
		t.Fatalf("%d of %d requests wrong: %s", len(all), n, strings.Join(all, "; "))
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// nopWriter is the cheapest ResponseWriter, so the benchmark measures the filter.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

func BenchmarkHeaders(b *testing.B) {
	cases := []struct{ name, cfg string }{
		{"request constant", "request:\n  set: {X-Env: prod}\n  remove: [X-Debug]"},
		{"request template", "request:\n  set: {X-Client: \"%{client_ip}\", X-Orig: \"%{method} %{host}%{path}\"}"},
		{"response constant", "response:\n  set: {Cache-Control: no-store}\n  remove: [Server]"},
	}
	for _, c := range cases {
		b.Run(strings.ReplaceAll(c.name, " ", "_"), func(b *testing.B) {
			f := mustBuild(b, c.cfg)
			h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				w.WriteHeader(200)
				return nil
			}))
			r := httptest.NewRequest("GET", "http://api.example.com/v1/items", nil)
			r.Header.Set("Accept", "application/json")
			r.Header.Set("User-Agent", "bench")
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				if err := h.ServeHTTP(w, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
