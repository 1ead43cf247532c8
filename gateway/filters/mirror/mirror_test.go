package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/mirror"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// wait bounds every wait in these tests.
const wait = 10 * time.Second

// shadowSeen is what the fake shadow cluster got.
type shadowSeen struct {
	method, host, uri string
	header            http.Header
	body              []byte
	contentLength     int64
	ctx               context.Context
}

// shadowCluster records every request it gets on a channel, after running hook
// (if any), whose error it returns.
type shadowCluster struct {
	got  chan shadowSeen
	hook func(r *http.Request) error
}

func newShadow(hook func(r *http.Request) error) *shadowCluster {
	return &shadowCluster{got: make(chan shadowSeen, 100000), hook: hook}
}

func (s *shadowCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	// Changing its own copy must not touch the primary's headers (-race checks).
	r.Header.Set("X-Shadow-Was-Here", "1")
	w.Header().Set("X-Discarded", "1")
	w.WriteHeader(500)
	io.WriteString(w, "shadow response, discarded")
	s.got <- shadowSeen{method: r.Method, host: r.Host, uri: r.URL.RequestURI(), header: r.Header.Clone(),
		body: body, contentLength: r.ContentLength, ctx: r.Context()}
	if s.hook != nil {
		return s.hook(r)
	}
	return nil
}

type statser interface{ Stats() mirror.Stats }

// setup builds the filter with shadow as cluster shadow-v2 and chains it before a
// terminal handler that reads the primary's body as far as read says (-1: all) and
// answers 200 "primary:<body>".
func setup(t *testing.T, cfg string, shadow filter.Handler, read int) (filter.Handler, filter.Filter) {
	t.Helper()
	f, err := build(t, cfg, upstreams{"shadow-v2": shadow})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Cleanup(func() { closeWithin(t, f) })
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var body []byte
		var err error
		if read < 0 {
			body, err = io.ReadAll(r.Body)
		} else {
			body = make([]byte, read)
			if _, err = io.ReadFull(r.Body, body); err == io.EOF {
				body, err = nil, nil // a request without a body
			}
		}
		if err != nil {
			return filter.Errorf(400, "bad_body", "%v", err)
		}
		w.Header().Set("X-Primary", "1")
		io.WriteString(w, "primary:"+string(body))
		return nil
	}))
	return h, f
}

// closeWithin closes the filter, which waits for every pending copy, within wait.
func closeWithin(t *testing.T, f filter.Filter) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f.(io.Closer).Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not return: a shadow request outlived the filter")
	}
}

func next(t *testing.T, ch chan shadowSeen) shadowSeen {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(wait):
		t.Fatal("no shadow request arrived")
	}
	return shadowSeen{}
}

func TestShadowIsACopy(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB: exactly the default cap
	tests := []struct {
		name      string
		method    string
		target    string
		host      string
		body      io.Reader
		expect    bool // the client sent Expect: 100-continue
		wantHost  string
		wantBody  string
		wantNoHdr []string
	}{
		{name: "GET", method: "GET", target: "/items?page=2", host: "api.example.com", wantHost: "api.example.com-shadow"},
		{name: "port kept after suffix", method: "GET", target: "/", host: "api.example.com:8443", wantHost: "api.example.com-shadow:8443"},
		{name: "IPv4", method: "GET", target: "/", host: "10.0.0.1", wantHost: "10.0.0.1-shadow"},
		{name: "IPv6 with port", method: "GET", target: "/", host: "[2001:db8::1]:80", wantHost: "[2001:db8::1]-shadow:80"},
		{name: "POST with length", method: "POST", target: "/orders", host: "a.example", body: strings.NewReader(`{"id":1}`),
			wantHost: "a.example-shadow", wantBody: `{"id":1}`},
		{name: "chunked POST", method: "POST", target: "/upload", host: "a.example", body: chunked{strings.NewReader("streamed body")},
			wantHost: "a.example-shadow", wantBody: "streamed body"},
		{name: "body at the cap", method: "PUT", target: "/blob", host: "a.example", body: chunked{strings.NewReader(big)},
			wantHost: "a.example-shadow", wantBody: big},
		{name: "expect dropped", method: "POST", target: "/", host: "a.example", body: strings.NewReader("x"), expect: true,
			wantHost: "a.example-shadow", wantBody: "x", wantNoHdr: []string{"Expect"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shadow := newShadow(nil)
			h, f := setup(t, "cluster: shadow-v2", shadow, -1)
			r := httptest.NewRequest(tt.method, "http://"+tt.host+tt.target, tt.body)
			r.Host = tt.host
			r.Header.Set("X-Request-Id", "abc")
			r.Header.Add("Accept", "a")
			r.Header.Add("Accept", "b")
			if tt.expect {
				r.Header.Set("Expect", "100-continue")
			}
			inBody, inHeader := r.Body, r.Header.Clone()
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, r); err != nil {
				t.Fatalf("primary: %v", err)
			}
			if got := rec.Body.String(); got != "primary:"+tt.wantBody || rec.Code != 200 || rec.Header().Get("X-Discarded") != "" {
				t.Errorf("primary answered %d %v %.40q; want 200 primary:<body> without shadow headers", rec.Code, rec.Header(), got)
			}
			if r.Body != inBody || !equalHeader(r.Header, inHeader) {
				t.Error("the inbound request was changed")
			}

			s := next(t, shadow.got)
			if s.method != tt.method || s.uri != tt.target || s.host != tt.wantHost {
				t.Errorf("shadow got %s %s Host %q, want %s %s Host %q", s.method, s.uri, s.host, tt.method, tt.target, tt.wantHost)
			}
			if string(s.body) != tt.wantBody || s.contentLength != int64(len(tt.wantBody)) {
				t.Errorf("shadow body %d bytes (ContentLength %d), want %d bytes equal to the primary's", len(s.body), s.contentLength, len(tt.wantBody))
			}
			if s.header.Get("X-Request-Id") != "abc" || strings.Join(s.header["Accept"], ",") != "a,b" {
				t.Errorf("shadow headers %v, want the primary's", s.header)
			}
			for _, k := range tt.wantNoHdr {
				if v := s.header.Get(k); v != "" {
					t.Errorf("shadow has %s: %s", k, v)
				}
			}
			closeWithin(t, f)
			if st := f.(statser).Stats(); st != (mirror.Stats{Mirrored: 1}) {
				t.Errorf("stats %+v, want one mirrored", st)
			}
		})
	}
}

func TestNotMirrored(t *testing.T) {
	tests := []struct {
		name   string
		cfg    string
		body   func() io.Reader
		length int64 // ContentLength to claim; 0 keeps what httptest sets
		read   int   // how much of the body the primary reads; -1 all
		want   mirror.Stats
	}{
		{name: "known length over the cap", cfg: "maxBodyBytes: 16", body: func() io.Reader { return strings.NewReader(strings.Repeat("x", 17)) },
			read: -1, want: mirror.Stats{SkippedBodyTooLarge: 1}},
		{name: "chunked body over the cap", cfg: "maxBodyBytes: 16", body: func() io.Reader { return chunked{strings.NewReader(strings.Repeat("x", 100))} },
			read: -1, want: mirror.Stats{SkippedBodyTooLarge: 1}},
		{name: "any body with a zero cap", cfg: "maxBodyBytes: 0", body: func() io.Reader { return chunked{strings.NewReader("x")} },
			read: -1, want: mirror.Stats{SkippedBodyTooLarge: 1}},
		{name: "body not read", cfg: "", body: func() io.Reader { return strings.NewReader("unread") },
			read: 0, want: mirror.Stats{SkippedIncompleteBody: 1}},
		{name: "body read in part", cfg: "", body: func() io.Reader { return chunked{strings.NewReader("partly read")} },
			read: 4, want: mirror.Stats{SkippedIncompleteBody: 1}},
		{name: "body fails", cfg: "", body: func() io.Reader { return io.MultiReader(strings.NewReader("ab"), failing{}) },
			read: -1, want: mirror.Stats{SkippedIncompleteBody: 1}},
		{name: "not sampled", cfg: "fraction: 0", body: func() io.Reader { return strings.NewReader("x") },
			read: -1, want: mirror.Stats{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shadow := newShadow(nil)
			// maxInFlight 1: the follow-up request below is mirrored only if the
			// skipped one gave its slot back.
			h, f := setup(t, "cluster: shadow-v2\nmaxInFlight: 1\n"+tt.cfg, shadow, tt.read)
			r := httptest.NewRequest("POST", "/", tt.body())
			rec := httptest.NewRecorder()
			err := h.ServeHTTP(rec, r)
			if tt.name == "body fails" {
				if s, _ := filter.StatusOf(err); s != 400 {
					t.Errorf("primary err %v, want the body's failure passed through", err)
				}
			} else if err != nil || rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), "primary:") {
				t.Errorf("primary: %v %d %q", err, rec.Code, rec.Body)
			}
			if st := f.(statser).Stats(); st != tt.want {
				t.Errorf("stats %+v, want %+v", st, tt.want)
			}
			if tt.want == (mirror.Stats{}) {
				return
			}
			if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)); err != nil {
				t.Fatal(err)
			}
			closeWithin(t, f)
			if n := len(shadow.got); n != 1 {
				t.Errorf("the shadow got %d requests, want only the follow-up GET", n)
			}
			if st := f.(statser).Stats(); st.Mirrored != 1 {
				t.Errorf("follow-up not mirrored (stats %+v): the skipped request kept its in-flight slot", st)
			}
		})
	}
}

// TestLengthReachedWithoutEOF: the core's transport copies exactly ContentLength
// bytes and never asks for the EOF; the copy must still be sent. Without a length
// the end is known only from EOF.
func TestLengthReachedWithoutEOF(t *testing.T) {
	const body = "exactly this"
	tests := []struct {
		name     string
		body     io.Reader
		mirrored bool
	}{
		{"known length", strings.NewReader(body), true},
		{"unknown length", chunked{strings.NewReader(body)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shadow := newShadow(nil)
			h, f := setup(t, "cluster: shadow-v2", shadow, len(body))
			if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/", tt.body)); err != nil {
				t.Fatal(err)
			}
			closeWithin(t, f)
			want := mirror.Stats{SkippedIncompleteBody: 1}
			if tt.mirrored {
				want = mirror.Stats{Mirrored: 1}
				if s := next(t, shadow.got); string(s.body) != body {
					t.Errorf("shadow body %q, want %q", s.body, body)
				}
			}
			if st := f.(statser).Stats(); st != want {
				t.Errorf("stats %+v, want %+v", st, want)
			}
		})
	}
}

func TestPrimaryUnaffected(t *testing.T) {
	release := make(chan struct{})
	tests := []struct {
		name string
		hook func(r *http.Request) error
		want mirror.Stats
	}{
		{"slow shadow", func(r *http.Request) error {
			select {
			case <-release:
				return nil
			case <-r.Context().Done():
				return r.Context().Err()
			}
		}, mirror.Stats{Mirrored: 1}},
		{"failing shadow", func(*http.Request) error { return filter.Errorf(503, "no_healthy_upstream", "down") }, mirror.Stats{Failed: 1}},
		{"panicking shadow", func(*http.Request) error { panic("bug in the upstream handler") }, mirror.Stats{Failed: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shadow := newShadow(tt.hook)
			h, f := setup(t, "cluster: shadow-v2\ntimeout: 1h", shadow, -1)
			rec := httptest.NewRecorder()
			done := make(chan error, 1)
			go func() { done <- h.ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader("payload"))) }()
			// The slow shadow is released only after the primary is done, so a
			// primary that waited for its copy would never finish.
			select {
			case err := <-done:
				if err != nil || rec.Code != 200 || rec.Body.String() != "primary:payload" {
					t.Errorf("primary: err %v, %d %q; want 200 primary:payload", err, rec.Code, rec.Body)
				}
			case <-time.After(wait):
				t.Fatal("the primary waited for its shadow")
			}
			next(t, shadow.got)
			if tt.name == "slow shadow" {
				close(release)
			}
			closeWithin(t, f)
			if st := f.(statser).Stats(); st != tt.want {
				t.Errorf("stats %+v, want %+v", st, tt.want)
			}
		})
	}
}

func TestMaxInFlight(t *testing.T) {
	gate := make(chan struct{})
	shadow := newShadow(func(r *http.Request) error {
		select {
		case <-gate:
			return nil
		case <-r.Context().Done():
			return r.Context().Err()
		}
	})
	h, f := setup(t, "cluster: shadow-v2\nmaxInFlight: 2", shadow, -1)
	for range 5 {
		if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)); err != nil {
			t.Fatal(err)
		}
	}
	next(t, shadow.got)
	next(t, shadow.got)
	if st := f.(statser).Stats(); st.SkippedInFlight != 3 {
		t.Errorf("stats %+v, want 3 skipped over maxInFlight 2", st)
	}
	close(gate)
	// Once the two copies are done their slots are free again.
	deadline := time.Now().Add(wait)
	for f.(statser).Stats().Mirrored < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the released shadows did not finish: %+v", f.(statser).Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)); err != nil {
		t.Fatal(err)
	}
	// Let the third copy finish before Close, which would cancel it.
	for f.(statser).Stats().Mirrored < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the third shadow did not finish: %+v", f.(statser).Stats())
		}
		time.Sleep(time.Millisecond)
	}
	closeWithin(t, f)
	if st := f.(statser).Stats(); st != (mirror.Stats{Mirrored: 3, SkippedInFlight: 3}) {
		t.Errorf("stats %+v, want 3 mirrored and 3 skipped", st)
	}
}

type ctxKey struct{}

func TestShadowContext(t *testing.T) {
	t.Run("detached from the client, with the timeout", func(t *testing.T) {
		clientGone := make(chan struct{})
		type result struct {
			errAfterClientLeft error
			deadline           time.Time
			value              any
		}
		res := make(chan result, 1)
		shadow := newShadow(func(r *http.Request) error {
			<-clientGone
			d, _ := r.Context().Deadline()
			res <- result{r.Context().Err(), d, r.Context().Value(ctxKey{})}
			return nil
		})
		h, _ := setup(t, "cluster: shadow-v2\ntimeout: 1h", shadow, -1)
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "trace-1"))
		start := time.Now()
		if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(ctx, "GET", "/", nil)); err != nil {
			t.Fatal(err)
		}
		cancel()
		close(clientGone)
		select {
		case r := <-res:
			if r.errAfterClientLeft != nil {
				t.Errorf("the shadow's context ended with the client's: %v", r.errAfterClientLeft)
			}
			if r.deadline.IsZero() || r.deadline.Before(start.Add(time.Hour-time.Minute)) || r.deadline.After(time.Now().Add(time.Hour)) {
				t.Errorf("shadow deadline %v, want about an hour from %v", r.deadline, start)
			}
			if r.value != "trace-1" {
				t.Errorf("shadow context value %v, want the request's values kept", r.value)
			}
		case <-time.After(wait):
			t.Fatal("no shadow request arrived")
		}
	})
	t.Run("timeout ends the shadow", func(t *testing.T) {
		ended := make(chan error, 1)
		shadow := newShadow(func(r *http.Request) error {
			select {
			case <-r.Context().Done():
				ended <- r.Context().Err()
				return r.Context().Err()
			case <-time.After(wait):
				ended <- nil
				return nil
			}
		})
		h, f := setup(t, "cluster: shadow-v2\ntimeout: 20ms", shadow, -1)
		if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-ended:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("shadow ended with %v, want its timeout", err)
			}
		case <-time.After(2 * wait):
			t.Fatal("the shadow did not end")
		}
		closeWithin(t, f)
		if st := f.(statser).Stats(); st != (mirror.Stats{Failed: 1}) {
			t.Errorf("stats %+v, want one failed", st)
		}
	})
}

// TestShadowHasItsOwnInfo: the forwarder records what it did in the request's
// proxy.Info, which the primary's access log reads. The copy must write to its own
// record (run with -race: the two forwarders write at the same time), carrying the
// same client facts so that its X-Forwarded-* match the primary's.
func TestShadowHasItsOwnInfo(t *testing.T) {
	type seenInfo struct {
		info *proxy.Info
		fw   proxy.Forwarding
	}
	got := make(chan seenInfo, 1)
	shadow := newShadow(func(r *http.Request) error {
		info := proxy.InfoFrom(r.Context())
		if info == nil {
			got <- seenInfo{}
			return nil
		}
		fw := info.Forwarding
		info.Cluster, info.Reason = "shadow-v2", "upstream_timeout" // what the forwarder does
		got <- seenInfo{info, fw}
		return nil
	})
	f, err := build(t, "cluster: shadow-v2", upstreams{"shadow-v2": shadow})
	if err != nil {
		t.Fatal(err)
	}
	defer closeWithin(t, f)
	primary := &proxy.Info{Route: "default/r", Forwarding: proxy.Forwarding{
		PeerIP: netip.MustParseAddr("10.0.0.9"), ClientIP: netip.MustParseAddr("203.0.113.5"), TrustedPeer: true, Scheme: "https", Host: "api.example.com"}}
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		info := proxy.InfoFrom(r.Context())
		info.Cluster, info.Upstream = "backend", "10.1.1.1:80" // what the forwarder does
		return nil
	}))
	r := httptest.NewRequestWithContext(proxy.WithInfo(context.Background(), primary), "GET", "/", nil)
	if err := h.ServeHTTP(httptest.NewRecorder(), r); err != nil {
		t.Fatal(err)
	}
	var s seenInfo
	select {
	case s = <-got:
	case <-time.After(wait):
		t.Fatal("no shadow request arrived")
	}
	closeWithin(t, f)
	if s.info == nil || s.info == primary {
		t.Fatalf("the shadow's Info is %p, the primary's %p: want a record of its own", s.info, primary)
	}
	if s.fw != primary.Forwarding || s.info.Route != primary.Route {
		t.Errorf("shadow forwarding %+v route %q, want the primary's %+v %q", s.fw, s.info.Route, primary.Forwarding, primary.Route)
	}
	if primary.Cluster != "backend" || primary.Reason != "" {
		t.Errorf("the primary's record was overwritten: cluster %q reason %q", primary.Cluster, primary.Reason)
	}
}

func TestCloseCancelsAndStops(t *testing.T) {
	ended := make(chan error, 1)
	shadow := newShadow(func(r *http.Request) error {
		<-r.Context().Done()
		ended <- r.Context().Err()
		return r.Context().Err()
	})
	h, f := setup(t, "cluster: shadow-v2\ntimeout: 1h", shadow, -1)
	if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)); err != nil {
		t.Fatal(err)
	}
	next(t, shadow.got)
	closeWithin(t, f)
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("shadow ended with %v, want canceled by Close", err)
		}
	default:
		t.Fatal("Close returned before the pending shadow ended")
	}
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil)); err != nil || rec.Code != 200 {
		t.Errorf("a request after Close: %v %d", err, rec.Code)
	}
	if st := f.(statser).Stats(); st != (mirror.Stats{Failed: 1, SkippedClosed: 1}) {
		t.Errorf("stats %+v, want the pending shadow failed and the late one skipped", st)
	}
}

// TestOverHTTP mirrors a chunked upload received by a real server, where the body
// is read by net/http's own reader.
func TestOverHTTP(t *testing.T) {
	shadow := newShadow(nil)
	h, _ := setup(t, "cluster: shadow-v2", shadow, -1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.ServeHTTP(w, r); err != nil {
			http.Error(w, err.Error(), 500)
		}
	}))
	defer srv.Close()
	payload := bytes.Repeat([]byte("mirror me "), 1000)
	req, _ := http.NewRequest("POST", srv.URL+"/up", chunked{bytes.NewReader(payload)})
	res, err := (&http.Client{Timeout: wait}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "primary:"+string(payload) {
		t.Errorf("primary answered %.40q", body)
	}
	s := next(t, shadow.got)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	if !bytes.Equal(s.body, payload) || s.host != host+"-shadow:"+port {
		t.Errorf("shadow got %d bytes (want %d), Host %q (want %s-shadow:%s)", len(s.body), len(payload), s.host, host, port)
	}
}

func BenchmarkMirror(b *testing.B) {
	cases := []struct{ name, cfg string }{
		{"not_sampled", "cluster: shadow-v2\nfraction: 0.0001\nmaxInFlight: 100000000"},
		// Every request copied, none skipped: the whole cost of a sampled request,
		// its goroutine and its copy included.
		{"sampled_GET", "cluster: shadow-v2\nfraction: 1\nmaxInFlight: 100000000"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f, err := build(b, c.cfg, upstreams{"shadow-v2": noop})
			if err != nil {
				b.Fatal(err)
			}
			h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				w.WriteHeader(200)
				return nil
			}))
			r := httptest.NewRequest("GET", "http://api.example.com/v1/items", nil)
			r.Header.Set("Accept", "application/json")
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				if err := h.ServeHTTP(w, r); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			f.(io.Closer).Close()
			if st := f.(statser).Stats(); st.SkippedInFlight > 0 || st.Failed > 0 {
				b.Fatalf("stats %+v: the benchmark did not measure what it says", st)
			}
		})
	}
}
