package fault_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/fault"
)

// counted runs n requests through the filter from 4 goroutines and returns how many
// were delayed, aborted, and reached the terminal handler. Delays are counted, not
// slept, through fault.SetWait.
func counted(t *testing.T, cfg string, n int, mod func(*http.Request)) (delayed, aborted, passed int) {
	t.Helper()
	f := mustBuild(t, cfg)
	var d, a, p atomic.Int64
	fault.SetWait(f, func(context.Context, time.Duration) error { d.Add(1); return nil })
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		p.Add(1)
		return nil
	}))
	const workers = 4
	var wg sync.WaitGroup
	var unexpected atomic.Value
	for i := range workers {
		wg.Go(func() {
			r := httptest.NewRequest("GET", "/", nil)
			if mod != nil {
				mod(r)
			}
			for range n/workers + boolInt(i < n%workers) {
				err := h.ServeHTTP(httptest.NewRecorder(), r)
				var fe *filter.Error
				switch {
				case err == nil:
				case errors.As(err, &fe) && fe.Reason == fault.ReasonAbort:
					a.Add(1)
				default:
					unexpected.Store(err)
				}
			}
		})
	}
	wg.Wait()
	if err := unexpected.Load(); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	return int(d.Load()), int(a.Load()), int(p.Load())
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// within checks that got is within 5 standard deviations of a binomial(n, p) count:
// a correct filter fails this less than once in a million runs, while an off-by-a-
// factor percentage fails it every time.
func within(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	tol := math.Max(5*math.Sqrt(float64(n)*p*(1-p)), 1)
	if math.Abs(float64(got)-mean) > tol {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f", what, got, n, mean, tol)
	}
}

func TestPercentages(t *testing.T) {
	const n = 20000
	tests := []struct {
		name           string
		cfg            string
		delayP, abortP float64 // expected shares
	}{
		{name: "abort 5%", cfg: "abort: {status: 503, percent: 5}", abortP: 0.05},
		{name: "abort 0.5% (fraction)", cfg: "abort: {status: 503, percent: 0.5}", abortP: 0.005},
		{name: "abort default 100%", cfg: "abort: {status: 503}", abortP: 1},
		{name: "abort 0%", cfg: "abort: {status: 503, percent: 0}", abortP: 0},
		{name: "delay 10%", cfg: "delay: {duration: 1h, percent: 10}", delayP: 0.1},
		{name: "delay 0.1%", cfg: "delay: {duration: 1h, percent: 0.1}", delayP: 0.001},
		{name: "delay default 100%", cfg: "delay: {duration: 1h}", delayP: 1},
		{name: "delay and abort are independent", cfg: "delay: {duration: 1h, percent: 50}\nabort: {status: 500, percent: 20}",
			delayP: 0.5, abortP: 0.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			delayed, aborted, passed := counted(t, tt.cfg, n, nil)
			within(t, "delayed", delayed, n, tt.delayP)
			within(t, "aborted", aborted, n, tt.abortP)
			if aborted+passed != n {
				t.Errorf("aborted %d + passed %d != %d requests", aborted, passed, n)
			}
		})
	}
}

func TestHeaderGate(t *testing.T) {
	const n = 1000
	cfg := "delay: {duration: 1h}\nabort: {status: 503}\nheader: X-Fault"
	tests := []struct {
		name    string
		mod     func(*http.Request)
		faulted bool
	}{
		{"header absent", nil, false},
		{"other header", func(r *http.Request) { r.Header.Set("X-Faults", "1") }, false},
		{"header present", func(r *http.Request) { r.Header.Set("X-Fault", "1") }, true},
		{"header lower case", func(r *http.Request) { r.Header["X-Fault"] = []string{"yes"} }, true},
		{"header empty value", func(r *http.Request) { r.Header["X-Fault"] = []string{""} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			delayed, aborted, passed := counted(t, cfg, n, tt.mod)
			want := 0
			if tt.faulted {
				want = n
			}
			if delayed != want || aborted != want || passed != n-want {
				t.Errorf("delayed %d, aborted %d, passed %d; want %d, %d, %d", delayed, aborted, passed, want, want, n-want)
			}
		})
	}
}

func TestAbortIsAnsweredByTheCore(t *testing.T) {
	f := mustBuild(t, "abort: {status: 503, grpcStatus: 14}")
	called := false
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		called = true
		return nil
	}))
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if status, reason := filter.StatusOf(err); status != 503 || reason != "fault_abort" {
		t.Errorf("StatusOf(%v) = %d %s, want 503 fault_abort", err, status, reason)
	}
	if called {
		t.Error("the terminal handler ran for an aborted request")
	}
	if rec.Flushed || rec.Body.Len() > 0 || len(rec.Header()) > 0 {
		t.Errorf("the filter wrote a response (%d, %v, %q); the core answers aborts", rec.Code, rec.Header(), rec.Body)
	}
}

func TestGRPCAbort(t *testing.T) {
	tests := []struct {
		name        string
		cfg         string
		contentType string
		grpc        bool // answered the gRPC way, else as *filter.Error
	}{
		{"grpc", "abort: {status: 503, grpcStatus: 14}", "application/grpc", true},
		{"grpc+proto", "abort: {status: 503, grpcStatus: 14}", "application/grpc+proto", true},
		{"grpc with parameter", "abort: {status: 503, grpcStatus: 14}", "application/grpc;charset=utf-8", true},
		{"grpc-web is plain HTTP", "abort: {status: 503, grpcStatus: 14}", "application/grpc-web", false},
		{"json", "abort: {status: 503, grpcStatus: 14}", "application/json", false},
		{"grpc without grpcStatus", "abort: {status: 503}", "application/grpc", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := filter.Chain([]filter.Filter{mustBuild(t, tt.cfg)}, filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
				t.Error("the terminal handler ran for an aborted request")
				return nil
			}))
			r := httptest.NewRequest("POST", "/pkg.Service/Method", nil)
			r.Header.Set("Content-Type", tt.contentType)
			rec := httptest.NewRecorder()
			err := h.ServeHTTP(rec, r)
			if !tt.grpc {
				if s, _ := filter.StatusOf(err); s != 503 {
					t.Errorf("err %v, want a 503 *filter.Error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err %v, want nil: the filter answers gRPC itself", err)
			}
			res := rec.Result()
			if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/grpc" || res.Header.Get("Grpc-Status") != "14" {
				t.Errorf("got %d %v, want 200 with content-type application/grpc and grpc-status 14", res.StatusCode, res.Header)
			}
		})
	}
}

// TestGRPCAbortOverHTTP2 checks the answer on the wire: a gRPC client reads the
// status from a headers-only HTTP/2 response.
func TestGRPCAbortOverHTTP2(t *testing.T) {
	h := filter.Chain([]filter.Filter{mustBuild(t, "abort: {status: 503, grpcStatus: 8}")}, filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return nil
	}))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.ServeHTTP(w, r); err != nil {
			http.Error(w, err.Error(), 500)
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()
	client.Timeout = 10 * time.Second
	req, _ := http.NewRequest("POST", srv.URL+"/pkg.Service/Method", nil)
	req.Header.Set("Content-Type", "application/grpc")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", res.Proto)
	}
	if res.StatusCode != 200 || res.Header.Get("Grpc-Status") != "8" || len(body) != 0 {
		t.Errorf("got %d grpc-status %q body %q, want 200, 8, empty", res.StatusCode, res.Header.Get("Grpc-Status"), body)
	}
}

func TestDelay(t *testing.T) {
	f := mustBuild(t, "delay: {duration: 30ms}")
	called := false
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		called = true
		return nil
	}))
	start := time.Now()
	if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Errorf("returned after %v, want at least the 30ms delay", el)
	}
	if !called {
		t.Error("a delayed request was not passed on")
	}
}

func TestDelayEndsWithTheRequest(t *testing.T) {
	tests := []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		status int
		reason string
		is     error
	}{
		{"client cancels", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}, 499, "client_closed", context.Canceled},
		{"deadline passes", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, 504, "timeout", context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := filter.Chain([]filter.Filter{mustBuild(t, "delay: {duration: 1h}")}, filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
				t.Error("the request was passed on after its context ended")
				return nil
			}))
			ctx, cancel := tt.ctx()
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(ctx, "GET", "/", nil))
			}()
			select {
			case err := <-done:
				if s, r := filter.StatusOf(err); s != tt.status || r != tt.reason {
					t.Errorf("StatusOf(%v) = %d %s, want %d %s", err, s, r, tt.status, tt.reason)
				}
				if !errors.Is(err, tt.is) {
					t.Errorf("err %v does not wrap %v", err, tt.is)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the delay did not end with the request's context")
			}
		})
	}
}

// nopWriter is the cheapest ResponseWriter, so the benchmark measures the filter.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkPassThrough measures requests the filter lets through untouched.
func BenchmarkPassThrough(b *testing.B) {
	cases := []struct{ name, cfg string }{
		{"header_absent", "delay: {duration: 1s}\nabort: {status: 503}\nheader: x-fault"},
		{"not_selected", "delay: {duration: 1s, percent: 0.0001}\nabort: {status: 503, percent: 0.0001}"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f := mustBuild(b, c.cfg)
			// The rare selected request must not sleep through the benchmark.
			fault.SetWait(f, func(context.Context, time.Duration) error { return nil })
			h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				w.WriteHeader(200)
				return nil
			}))
			r := httptest.NewRequest("GET", "/", nil)
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				if err := h.ServeHTTP(w, r); err != nil {
					if _, reason := filter.StatusOf(err); reason != fault.ReasonAbort {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
