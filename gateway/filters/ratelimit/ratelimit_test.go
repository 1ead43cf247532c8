package ratelimit_test

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/ratelimit"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// clock is a settable clock: buckets refill when a test says so, not when the
// machine gets round to it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// limited builds the filter on a frozen clock in front of a terminal handler that
// answers 200 and counts its calls.
func limited(t testing.TB, cfg string) (filter.Handler, filter.Filter, *clock, *atomic.Int64) {
	t.Helper()
	f := mustBuild(t, cfg)
	c := newClock()
	ratelimit.SetClock(f, c.now)
	var calls atomic.Int64
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		calls.Add(1)
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	return h, f, c, &calls
}

// req is a request modified by mods.
func req(mods ...func(*http.Request)) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	for _, m := range mods {
		m(r)
	}
	return r
}

// client sets the client address the core would have found (behind trusted
// proxies, from X-Forwarded-For) in the request's proxy.Info.
func client(ip string) func(*http.Request) {
	return func(r *http.Request) {
		info := &proxy.Info{Forwarding: proxy.Forwarding{ClientIP: netip.MustParseAddr(ip)}}
		*r = *r.WithContext(proxy.WithInfo(r.Context(), info))
	}
}

func peer(addr string) func(*http.Request) { return func(r *http.Request) { r.RemoteAddr = addr } }

func header(k, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(k, v) } }

// serve runs one request and returns its status: the recorder's, or the status of
// the error the core would answer.
func serve(t testing.TB, h filter.Handler, r *http.Request) (int, *httptest.ResponseRecorder) {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r); err != nil {
		var fe *filter.Error
		if !errors.As(err, &fe) {
			t.Fatalf("err %v is not a *filter.Error", err)
		}
		return fe.Status, rec
	}
	return rec.Code, rec
}

func ceilSeconds(x float64) string { return strconv.Itoa(int(math.Ceil(x - 1e-9))) }

// TestBurst: a frozen clock gives exactly burst successes, each with its remaining
// count, then 429 with the four headers.
func TestBurst(t *testing.T) {
	tests := []struct {
		rps   float64
		burst int
	}{
		{1, 5},
		{0.5, 1},
		{10, 3},
		{100, 1000},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("rps %v burst %d", tt.rps, tt.burst), func(t *testing.T) {
			h, _, _, calls := limited(t, fmt.Sprintf("requestsPerSecond: %v\nburst: %d", tt.rps, tt.burst))
			limit := strconv.Itoa(tt.burst)
			for i := range tt.burst {
				status, rec := serve(t, h, req(client("192.0.2.1")))
				if status != 200 {
					t.Fatalf("request %d: status %d, want 200", i+1, status)
				}
				hd := rec.Result().Header
				if hd.Get("RateLimit-Limit") != limit || hd.Get("RateLimit-Remaining") != strconv.Itoa(tt.burst-1-i) ||
					hd.Get("RateLimit-Reset") != ceilSeconds(float64(i+1)/tt.rps) || hd.Get("Retry-After") != "" {
					t.Fatalf("request %d: limit %q remaining %q reset %q retry-after %q; want %s, %d, %s, none", i+1,
						hd.Get("RateLimit-Limit"), hd.Get("RateLimit-Remaining"), hd.Get("RateLimit-Reset"), hd.Get("Retry-After"),
						limit, tt.burst-1-i, ceilSeconds(float64(i+1)/tt.rps))
				}
			}
			info := &proxy.Info{Forwarding: proxy.Forwarding{ClientIP: netip.MustParseAddr("192.0.2.1")}}
			r := req()
			r = r.WithContext(proxy.WithInfo(r.Context(), info))
			status, rec := serve(t, h, r)
			if status != http.StatusTooManyRequests || rec.Code != http.StatusTooManyRequests {
				t.Fatalf("request %d: status %d (written %d), want 429 written by the filter", tt.burst+1, status, rec.Code)
			}
			hd := rec.Result().Header
			want := map[string]string{
				"RateLimit-Limit":        limit,
				"RateLimit-Remaining":    "0",
				"RateLimit-Reset":        ceilSeconds(float64(tt.burst) / tt.rps),
				"Retry-After":            ceilSeconds(math.Max(1/tt.rps, 1)),
				"Content-Type":           "text/plain; charset=utf-8",
				"X-Content-Type-Options": "nosniff",
			}
			for k, v := range want {
				if got := hd.Get(k); got != v {
					t.Errorf("429 %s: %q, want %q", k, got, v)
				}
			}
			if body := rec.Body.String(); body != "429 Too Many Requests: rate_limited\n" {
				t.Errorf("body %q", body)
			}
			if info.Reason != ratelimit.ReasonLimited {
				t.Errorf("proxy.Info.Reason %q, want %q for the access log", info.Reason, ratelimit.ReasonLimited)
			}
			if calls.Load() != int64(tt.burst) {
				t.Errorf("upstream called %d times, want %d", calls.Load(), tt.burst)
			}
		})
	}
}

// TestRefill: buckets refill with (injected) time, one token per 1/rps.
func TestRefill(t *testing.T) {
	h, _, c, _ := limited(t, "requestsPerSecond: 2\nburst: 4")
	ip := client("192.0.2.7")
	steps := []struct {
		name    string
		advance time.Duration
		n       int // requests
		pass    int // of which pass
		retry   string
	}{
		{"burst", 0, 5, 4, "1"},
		{"not yet a token", 499 * time.Millisecond, 1, 0, "1"},
		{"one token after 1/rps", time.Millisecond, 2, 1, "1"},
		{"full again after burst/rps", 2 * time.Second, 5, 4, "1"},
		{"never more than burst after a long idle", time.Hour, 6, 4, "1"},
	}
	for _, s := range steps {
		c.add(s.advance)
		pass, retry := 0, ""
		for range s.n {
			status, rec := serve(t, h, req(ip))
			if status == 200 {
				pass++
			} else {
				retry = rec.Result().Header.Get("Retry-After")
			}
		}
		if pass != s.pass || (pass < s.n && retry != s.retry) {
			t.Errorf("%s: %d of %d passed (Retry-After %q), want %d (%q)", s.name, pass, s.n, retry, s.pass, s.retry)
		}
	}
}

// TestKeys: which requests share a bucket. Every config has burst 1, so a step's
// expected status says whether its bucket was already used.
func TestKeys(t *testing.T) {
	type step struct {
		mods   []func(*http.Request)
		status int
	}
	const ipCfg = "requestsPerSecond: 1\nburst: 1"
	const hdrCfg = "requestsPerSecond: 1\nburst: 1\nkey: {header: X-API-Key}"
	tests := []struct {
		name  string
		cfg   string
		steps []step
	}{
		{"client addresses are isolated", ipCfg, []step{
			{[]func(*http.Request){client("192.0.2.1")}, 200},
			{[]func(*http.Request){client("192.0.2.2")}, 200},
			{[]func(*http.Request){client("192.0.2.1")}, 429},
			{[]func(*http.Request){client("2001:db8::1")}, 200},
		}},
		{"the client address comes from proxy.Info, not the peer", ipCfg, []step{
			// Two clients behind the same trusted proxy: two buckets.
			{[]func(*http.Request){peer("10.0.0.1:40000"), client("198.51.100.1")}, 200},
			{[]func(*http.Request){peer("10.0.0.1:40001"), client("198.51.100.2")}, 200},
			// One client through two proxies: one bucket.
			{[]func(*http.Request){peer("10.0.0.2:40000"), client("198.51.100.1")}, 429},
		}},
		{"IPv4 and IPv4-mapped IPv6 are one client", ipCfg, []step{
			{[]func(*http.Request){client("192.0.2.9")}, 200},
			{[]func(*http.Request){client("::ffff:192.0.2.9")}, 429},
		}},
		{"without proxy.Info the peer address is the key", ipCfg, []step{
			{[]func(*http.Request){peer("203.0.113.5:1234")}, 200},
			{[]func(*http.Request){peer("203.0.113.5:5678")}, 429},
			{[]func(*http.Request){peer("203.0.113.6:1234")}, 200},
		}},
		{"unparsable peer without proxy.Info shares one bucket", ipCfg, []step{
			{[]func(*http.Request){peer("@unix")}, 200},
			{[]func(*http.Request){peer("pipe")}, 429},
		}},
		{"header keys are isolated", hdrCfg, []step{
			{[]func(*http.Request){header("X-API-Key", "k1"), client("192.0.2.1")}, 200},
			{[]func(*http.Request){header("X-API-Key", "k2"), client("192.0.2.1")}, 200},
			{[]func(*http.Request){header("X-API-Key", "k1"), client("192.0.2.2")}, 429},
		}},
		{"requests without the header share one bucket", hdrCfg, []step{
			{[]func(*http.Request){client("192.0.2.1")}, 200},
			{[]func(*http.Request){client("192.0.2.2"), header("X-API-Key", "")}, 429},
			{[]func(*http.Request){header("X-API-Key", "k1")}, 200},
		}},
		{"missingKey refuse", hdrCfg + "\nmissingKey: refuse", []step{
			{[]func(*http.Request){client("192.0.2.1")}, 400},
			{[]func(*http.Request){header("X-API-Key", "")}, 400},
			{[]func(*http.Request){header("X-API-Key", "k1")}, 200},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _, _, _ := limited(t, tt.cfg)
			for i, s := range tt.steps {
				if status, _ := serve(t, h, req(s.mods...)); status != s.status {
					t.Errorf("step %d: status %d, want %d", i+1, status, s.status)
				}
			}
		})
	}
}

func TestMissingKeyRefusedIsAnError(t *testing.T) {
	h, _, _, calls := limited(t, "requestsPerSecond: 1\nburst: 1\nkey: {header: X-API-Key}\nmissingKey: refuse")
	err := h.ServeHTTP(httptest.NewRecorder(), req())
	if s, reason := filter.StatusOf(err); s != 400 || reason != ratelimit.ReasonMissingKey {
		t.Errorf("StatusOf(%v) = %d %s, want 400 %s", err, s, reason, ratelimit.ReasonMissingKey)
	}
	if calls.Load() != 0 {
		t.Error("a request without its key reached the upstream")
	}
}

// TestPlans: usage plans by plan header or by key prefix; the limit follows the plan.
func TestPlans(t *testing.T) {
	type step struct {
		mods  []func(*http.Request)
		n     int    // requests sent
		pass  int    // of which pass
		limit string // RateLimit-Limit of the last one
	}
	const byHeader = `
requestsPerSecond: 1
burst: 1
planHeader: X-Plan
plans:
  gold: {requestsPerSecond: 10, burst: 3}
  silver: {requestsPerSecond: 5, burst: 2}`
	const byPrefix = `
requestsPerSecond: 1
burst: 1
key: {header: X-API-Key}
plans:
  gold_: {requestsPerSecond: 10, burst: 3}
  gold_eu_: {requestsPerSecond: 10, burst: 5}`
	tests := []struct {
		name  string
		cfg   string
		steps []step
	}{
		{"plan header chooses the rate", byHeader, []step{
			{[]func(*http.Request){client("192.0.2.1"), header("X-Plan", "gold")}, 4, 3, "3"},
			{[]func(*http.Request){client("192.0.2.2"), header("X-Plan", "silver")}, 3, 2, "2"},
			{[]func(*http.Request){client("192.0.2.3")}, 2, 1, "1"},
			{[]func(*http.Request){client("192.0.2.4"), header("X-Plan", "platinum")}, 2, 1, "1"},
		}},
		{"a changed plan moves the bucket, keeping its tokens", byHeader, []step{
			{[]func(*http.Request){client("192.0.2.1")}, 1, 1, "1"},
			{[]func(*http.Request){client("192.0.2.1"), header("X-Plan", "gold")}, 1, 0, "3"},
		}},
		{"longest key prefix wins", byPrefix, []step{
			{[]func(*http.Request){header("X-API-Key", "gold_abc")}, 4, 3, "3"},
			{[]func(*http.Request){header("X-API-Key", "gold_eu_abc")}, 6, 5, "5"},
			{[]func(*http.Request){header("X-API-Key", "free_abc")}, 2, 1, "1"},
			{[]func(*http.Request){header("X-API-Key", "gold")}, 2, 1, "1"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _, _, _ := limited(t, tt.cfg)
			for i, s := range tt.steps {
				pass, limit := 0, ""
				for range s.n {
					status, rec := serve(t, h, req(s.mods...))
					if status == 200 {
						pass++
					}
					limit = rec.Result().Header.Get("RateLimit-Limit")
				}
				if pass != s.pass || limit != s.limit {
					t.Errorf("step %d: %d of %d passed with limit %q, want %d with %q", i+1, pass, s.n, limit, s.pass, s.limit)
				}
			}
		})
	}
}

// TestKeyTableBounded floods the filter with ten times maxKeys distinct keys: the
// table never holds more than maxKeys, and a key in constant use keeps its
// (empty) bucket rather than being evicted into a fresh one.
func TestKeyTableBounded(t *testing.T) {
	const maxKeys = 1000
	tests := []struct {
		name string
		cfg  string
		key  func(i int) func(*http.Request)
		hot  func(*http.Request)
	}{
		{"client addresses", fmt.Sprintf("requestsPerSecond: 1\nburst: 1\nmaxKeys: %d", maxKeys),
			func(i int) func(*http.Request) {
				return client(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String())
			}, client("192.0.2.1")},
		{"header values", fmt.Sprintf("requestsPerSecond: 1\nburst: 1\nkey: {header: X-API-Key}\nmaxKeys: %d", maxKeys),
			func(i int) func(*http.Request) { return header("X-API-Key", "flood-"+strconv.Itoa(i)) },
			header("X-API-Key", "hot")},
		{"subjects", fmt.Sprintf("requestsPerSecond: 1\nburst: 1\nkey: {subject: {}}\nmaxKeys: %d", maxKeys),
			func(i int) func(*http.Request) {
				return identity("https://login.example.com", "user-"+strconv.Itoa(i), nil)
			},
			identity("https://login.example.com", "hot", nil)},
		{"claim values", fmt.Sprintf("requestsPerSecond: 1\nburst: 1\nkey: {claim: tenant}\nmaxKeys: %d", maxKeys),
			func(i int) func(*http.Request) {
				return identity("https://login.example.com", "u", map[string]any{"tenant": "t-" + strconv.Itoa(i)})
			},
			identity("https://login.example.com", "u", map[string]any{"tenant": "hot"})},
		{"IPv6 /64s", fmt.Sprintf("requestsPerSecond: 1\nburst: 1\nmaxKeys: %d", maxKeys),
			func(i int) func(*http.Request) {
				return client(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(i >> 16), 5: byte(i >> 8), 6: byte(i), 15: 1}).String())
			}, client("2001:db8:ffff:ffff::1")},
		{"login attempts by address", fmt.Sprintf("requestsPerSecond: 1\nburst: 1\ncountOnly: {statuses: [200]}\nmaxKeys: %d", maxKeys),
			func(i int) func(*http.Request) {
				return client(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String())
			}, client("192.0.2.1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, f, _, _ := limited(t, tt.cfg)
			if s, _ := serve(t, h, req(tt.hot)); s != 200 {
				t.Fatalf("hot key's first request: %d", s)
			}
			most := 0
			for i := range 10 * maxKeys {
				if s, _ := serve(t, h, req(tt.key(i))); s != 200 {
					t.Fatalf("flood key %d: status %d, want 200 (a new key has a full bucket)", i, s)
				}
				if i%10 == 0 {
					if s, _ := serve(t, h, req(tt.hot)); s != 429 {
						t.Fatalf("after %d flood keys the hot key got %d: its bucket was evicted and refilled", i, s)
					}
				}
				if i%100 == 0 {
					most = max(most, ratelimit.Keys(f))
				}
			}
			most = max(most, ratelimit.Keys(f))
			if most > maxKeys {
				t.Errorf("the table held %d keys, maxKeys is %d", most, maxKeys)
			}
			if most < maxKeys/2 {
				t.Errorf("the table held at most %d keys; it should use most of its %d", most, maxKeys)
			}
		})
	}
}

// TestConcurrent: many goroutines on a few keys take exactly burst tokens each
// (frozen clock), while others flood a small table. Run under -race.
func TestConcurrent(t *testing.T) {
	const burst, keys, workers, perWorker = 50, 4, 8, 100
	const maxKeys = 256 // 2 shards of two 64-key generations; the flood is 800 keys
	f := mustBuild(t, fmt.Sprintf("requestsPerSecond: 1\nburst: %d\nmaxKeys: %d", burst, maxKeys))
	c := newClock()
	ratelimit.SetClock(f, c.now)
	var passed [keys]atomic.Int64
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		a := proxy.InfoFrom(r.Context()).ClientIP.As4()
		if a[0] == 192 {
			passed[a[3]].Add(1)
		}
		return nil
	}))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				for k := range keys {
					_ = h.ServeHTTP(httptest.NewRecorder(), req(client(fmt.Sprintf("192.0.2.%d", k))))
				}
				// Flood: distinct keys that rotate the small table's generations
				// while the hot keys are in use.
				_ = h.ServeHTTP(httptest.NewRecorder(), req(client(fmt.Sprintf("10.%d.%d.1", w, i))))
			}
		})
	}
	wg.Wait()
	for k := range keys {
		// A hot key is evicted only if more than a generation (64) of inserts
		// reach its shard between two of its requests. Between two of them each
		// worker inserts at most 4 (3 other hot keys moved up, 1 flood key), 32
		// in all, so no hot key is ever refilled by eviction and the counts are
		// exact.
		if n := passed[k].Load(); n != burst {
			t.Errorf("key %d: %d requests passed, want exactly %d", k, n, burst)
		}
	}
	if n := ratelimit.Keys(f); n > maxKeys {
		t.Errorf("the table holds %d keys, maxKeys is %d", n, maxKeys)
	}
}

// TestGRPC: over the limit, a gRPC call is left to the core, which answers it the
// gRPC way; the rate-limit headers are already on w.
func TestGRPC(t *testing.T) {
	h, _, _, _ := limited(t, "requestsPerSecond: 0.25\nburst: 1")
	grpc := func(r *http.Request) { r.Header.Set("Content-Type", "application/grpc+proto") }
	if s, _ := serve(t, h, req(client("192.0.2.1"), grpc)); s != 200 {
		t.Fatalf("first call: %d", s)
	}
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, req(client("192.0.2.1"), grpc))
	if s, reason := filter.StatusOf(err); s != 429 || reason != ratelimit.ReasonLimited {
		t.Fatalf("StatusOf(%v) = %d %s, want 429 %s", err, s, reason, ratelimit.ReasonLimited)
	}
	if rec.Flushed || rec.Body.Len() > 0 {
		t.Error("the filter wrote a gRPC answer; the core does")
	}
	hd := rec.Header()
	if hd.Get("Retry-After") != "4" || hd.Get("RateLimit-Limit") != "1" || hd.Get("RateLimit-Remaining") != "0" || hd.Get("RateLimit-Reset") != "4" {
		t.Errorf("headers %v", hd)
	}
}

// nopWriter is the cheapest ResponseWriter, so the benchmark measures the filter.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkPassThrough measures allowed requests: a clock that moves 1ms per
// request at 1000 rps keeps the bucket from running dry.
func BenchmarkPassThrough(b *testing.B) {
	cases := []struct {
		name string
		cfg  string
		mods []func(*http.Request)
	}{
		{"client_ip", "requestsPerSecond: 1000\nburst: 100", []func(*http.Request){client("192.0.2.1")}},
		{"header", "requestsPerSecond: 1000\nburst: 100\nkey: {header: X-API-Key}", []func(*http.Request){header("X-API-Key", "k-0123456789abcdef")}},
		{"header_plan", "requestsPerSecond: 1\nburst: 1\nkey: {header: X-API-Key}\nplanHeader: X-Plan\nplans:\n  gold: {requestsPerSecond: 1000, burst: 100}",
			[]func(*http.Request){header("X-API-Key", "k-0123456789abcdef"), header("X-Plan", "gold")}},
		{"subject", "requestsPerSecond: 1000\nburst: 100\nkey: {subject: {}}",
			[]func(*http.Request){identity("https://login.example.com/realms/main", "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", nil)}},
		{"subject_plan_claim", "requestsPerSecond: 1\nburst: 1\nkey: {subject: {}}\nplanClaim: plan\nplans:\n  pro: {requestsPerSecond: 1000, burst: 100}",
			[]func(*http.Request){identity("https://login.example.com/realms/main", "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", map[string]any{"plan": "pro"})}},
		{"claim", "requestsPerSecond: 1000\nburst: 100\nkey: {claim: tenant.id}",
			[]func(*http.Request){identity("https://login.example.com", "u", map[string]any{"tenant": map[string]any{"id": "acme"}})}},
		{"client_ipv6", "requestsPerSecond: 1000\nburst: 100", []func(*http.Request){client("2001:db8:1:2:3:4:5:6")}},
		{"login_success", "requestsPerSecond: 1000\nburst: 100\ncountOnly: {statuses: [401]}", []func(*http.Request){client("192.0.2.1")}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f := mustBuild(b, c.cfg)
			t0 := time.Now()
			var tick time.Duration
			ratelimit.SetClock(f, func() time.Time { tick += time.Millisecond; return t0.Add(tick) })
			h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				w.WriteHeader(200)
				return nil
			}))
			r := req(c.mods...)
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				if err := h.ServeHTTP(w, r); err != nil {
					b.Fatal(err)
				}
			}
			if w.h.Get("Retry-After") != "" {
				b.Fatal("the benchmark ran into the limit")
			}
		})
	}
}

// BenchmarkParallel measures the real clock and the shard locks with one key per
// goroutine.
func BenchmarkParallel(b *testing.B) {
	f := mustBuild(b, "requestsPerSecond: 1e9\nburst: 1000")
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil }))
	var n atomic.Int32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := req(client(netip.AddrFrom4([4]byte{10, 0, 0, byte(n.Add(1))}).String()))
		w := &nopWriter{h: http.Header{}}
		for pb.Next() {
			if err := h.ServeHTTP(w, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
