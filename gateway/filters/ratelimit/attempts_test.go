package ratelimit_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	"github.com/portcullis/portcullis/gateway/filters/ratelimit"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// eventSink records security events as the core's observer would receive them.
type eventSink struct {
	mu  sync.Mutex
	got [][3]string // kind, remote, detail
}

func (s *eventSink) SecurityEvent(kind, remote, detail string) {
	s.mu.Lock()
	s.got = append(s.got, [3]string{kind, remote, detail})
	s.mu.Unlock()
}

func (s *eventSink) events() [][3]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][3]string(nil), s.got...)
}

// loginUpstream answers with the status in the request's X-Answer header (200
// without one), or, with X-Answer-Error, returns it as a later filter's error.
func loginUpstream(calls *atomic.Int64) filter.Handler {
	return filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		calls.Add(1)
		if v := r.Header.Get("X-Answer-Error"); v != "" {
			s, _ := strconv.Atoi(v)
			return &filter.Error{Status: s, Reason: "from_a_later_filter"}
		}
		if s, _ := strconv.Atoi(r.Header.Get("X-Answer")); s != 0 {
			w.WriteHeader(s)
		}
		_, _ = w.Write([]byte("answer"))
		return nil
	})
}

// TestLoginAttempts: only listed statuses use the bucket; when it is empty every
// attempt, even one that would succeed, gets 429 with the wait, and a security
// event; time gives attempts back.
func TestLoginAttempts(t *testing.T) {
	sink := &eventSink{}
	f := filtertest.MustBuild(t, "ratelimit", "requestsPerSecond: 0.1\nburst: 3\ncountOnly: {statuses: [401, 403]}",
		filtertest.WithBuild(func(b *filter.Build) { b.Events = sink }))
	c := newClock()
	ratelimit.SetClock(f, c.now)
	var calls atomic.Int64
	h := filter.Chain([]filter.Filter{f}, loginUpstream(&calls))

	steps := []struct {
		name      string
		advance   time.Duration
		client    string
		answer    string // the upstream's status; "e403": a later filter's error
		status    int
		remaining string // RateLimit-Remaining: failures left after this one
	}{
		{"success", 0, "192.0.2.1", "200", 200, "2"},
		{"successes do not consume", 0, "192.0.2.1", "200", 200, "2"},
		{"nor does an unlisted failure", 0, "192.0.2.1", "500", 500, "2"},
		{"failure 1", 0, "192.0.2.1", "401", 401, "2"},
		{"failure 2, a later filter's error", 0, "192.0.2.1", "e403", 403, "1"},
		{"failure 3", 0, "192.0.2.1", "401", 401, "0"},
		{"refused although it would succeed", 0, "192.0.2.1", "200", 429, "0"},
		{"another client is not affected", 0, "192.0.2.2", "401", 401, "2"},
		{"one attempt back after 1/rate", 10 * time.Second, "192.0.2.1", "401", 401, "0"},
		{"and only one", 0, "192.0.2.1", "401", 429, "0"},
	}
	for i, s := range steps {
		c.add(s.advance)
		r := req(client(s.client))
		info := proxy.InfoFrom(r.Context())
		if e, ok := strings.CutPrefix(s.answer, "e"); ok {
			r.Header.Set("X-Answer-Error", e)
		} else {
			r.Header.Set("X-Answer", s.answer)
		}
		before := calls.Load()
		status, rec := serve(t, h, r)
		hd := rec.Result().Header
		if status != s.status || hd.Get("RateLimit-Remaining") != s.remaining || hd.Get("RateLimit-Limit") != "3" {
			t.Fatalf("step %d (%s): status %d remaining %q limit %q, want %d %q \"3\"", i+1, s.name,
				status, hd.Get("RateLimit-Remaining"), hd.Get("RateLimit-Limit"), s.status, s.remaining)
		}
		forwarded := calls.Load() > before
		if status == 429 {
			if forwarded {
				t.Errorf("step %d (%s): refused, but the upstream was called", i+1, s.name)
			}
			if hd.Get("Retry-After") != "10" || !strings.Contains(rec.Body.String(), ratelimit.ReasonAttempts) ||
				info.Reason != ratelimit.ReasonAttempts {
				t.Errorf("step %d (%s): Retry-After %q, body %q, reason %q", i+1, s.name, hd.Get("Retry-After"), rec.Body, info.Reason)
			}
		} else if !forwarded || hd.Get("Retry-After") != "" {
			t.Errorf("step %d (%s): forwarded %v, Retry-After %q", i+1, s.name, forwarded, hd.Get("Retry-After"))
		}
	}
	want := [3]string{ratelimit.EventAttemptsExceeded, "192.0.2.1", "ratelimit: login_attempts_exceeded route=default/r#0 key=clientIP"}
	if got := sink.events(); len(got) != 2 || got[0] != want || got[1] != want {
		t.Errorf("security events %q, want two of %q", got, want)
	}
}

// TestLoginAttemptsParallel: 50 failing attempts at once on a bucket of 5 let 5
// through to the upstream, not 50: a token is reserved before forwarding. The
// upstream holds every attempt that reaches it until all 50 are accounted for, so
// a check-then-take design would let them all in.
func TestLoginAttemptsParallel(t *testing.T) {
	const attempts, burst = 50, 5
	for _, tt := range []struct {
		name   string
		answer int
		after  int // sequential failures allowed once the flood is over
	}{
		{"failures use their tokens", 401, 0},
		{"successes give theirs back", 200, burst},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, "requestsPerSecond: 0.01\nburst: 5\ncountOnly: {statuses: [401]}")
			ratelimit.SetClock(f, newClock().now)
			var arrived, refused atomic.Int64
			release := make(chan struct{})
			h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				arrived.Add(1)
				select {
				case <-release:
				case <-time.After(10 * time.Second):
				}
				w.WriteHeader(tt.answer)
				return nil
			}))
			var wg sync.WaitGroup
			for range attempts {
				wg.Go(func() {
					rec := httptest.NewRecorder()
					if err := h.ServeHTTP(rec, req(client("2001:db8::1"))); err == nil && rec.Code == 429 {
						refused.Add(1)
					}
				})
			}
			deadline := time.Now().Add(10 * time.Second)
			for arrived.Load()+refused.Load() < attempts && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // polling, bounded by the deadline
			}
			n := arrived.Load()
			close(release)
			wg.Wait()
			if n != burst || refused.Load() != attempts-burst {
				t.Errorf("%d attempts reached the upstream and %d were refused, want %d and %d", n, refused.Load(), burst, attempts-burst)
			}
			// What is left of the bucket: failures allowed before the next 429.
			h2 := filter.Chain([]filter.Filter{f}, loginUpstream(new(atomic.Int64)))
			allowed := 0
			for range burst + 1 {
				if s, _ := serve(t, h2, req(client("2001:db8::2"), header("X-Answer", "401"))); s == 401 {
					allowed++
				}
			}
			if allowed != tt.after {
				t.Errorf("after the flood %d failures were allowed, want %d", allowed, tt.after)
			}
		})
	}
}

// TestLoginAttemptPanics: an attempt whose outcome is unknown (the chain
// panicked) counts as a failure, and its reservation is settled.
func TestLoginAttemptPanics(t *testing.T) {
	f := mustBuild(t, "requestsPerSecond: 0.01\nburst: 2\ncountOnly: {statuses: [401]}")
	ratelimit.SetClock(f, newClock().now)
	var calls atomic.Int64
	ok := loginUpstream(&calls)
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.Header.Get("X-Panic") != "" {
			panic("upstream bug")
		}
		return ok.ServeHTTP(w, r)
	}))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not go up the chain")
			}
		}()
		_ = h.ServeHTTP(httptest.NewRecorder(), req(client("192.0.2.1"), header("X-Panic", "1")))
	}()
	for i, want := range []int{200, 401, 429} {
		if s, _ := serve(t, h, req(client("192.0.2.1"), header("X-Answer", strconv.Itoa(want)))); s != want {
			t.Errorf("attempt %d after the panic: %d, want %d", i+1, s, want)
		}
	}
}

// TestLoginAttemptsLog: without an event sink, refusals are logged, at most 100
// lines a second, and never with the key's value.
func TestLoginAttemptsLog(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(b)
	}), nil))
	f := filtertest.MustBuild(t, "ratelimit", "requestsPerSecond: 0.01\nburst: 1\nkey: {header: X-Login-Key}\ncountOnly: {statuses: [401]}",
		filtertest.WithBuild(func(b *filter.Build) { b.Logger = log }))
	ratelimit.SetClock(f, newClock().now)
	h := filter.Chain([]filter.Filter{f}, loginUpstream(new(atomic.Int64)))
	const secret = "pk_live_s3cret"
	for range 300 {
		_, _ = serve(t, h, req(client("192.0.2.1"), header("X-Login-Key", secret), header("X-Answer", "401")))
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	lines := strings.Count(out, "\n")
	if lines < 100 || lines >= 299 {
		t.Errorf("%d log lines for 299 refusals, want 100 in the first second and not one per refusal", lines)
	}
	if !strings.Contains(out, `"kind":"login_attempts_exceeded"`) || !strings.Contains(out, `"remote":"192.0.2.1"`) {
		t.Errorf("log lacks kind or remote: %.300s", out)
	}
	if strings.Contains(out, secret) {
		t.Error("the key's value is in the log")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
