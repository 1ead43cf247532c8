package ratelimit

import (
	"log/slog"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
)

// logLinesPerSecond bounds the security log lines of a filter built without an
// event sink: clients decide how many refusals there are.
const logLinesPerSecond = 100

// attempt serves a request in countOnly mode (login-attempt thresholds, SP 800-204
// MS-SS-11). Only failed attempts, responses with a countOnly status, use up the
// bucket; but a token is reserved before the request goes on and given back when
// its response is not a failure. So N attempts in flight at once need N tokens:
// with a full bucket of burst tokens, a flood of parallel attempts lets at most
// burst of them reach the upstream and refuses the rest at once, instead of
// letting them all through because none has failed yet.
//
// The cost of that bound is that attempts still in flight count against the
// bucket until they end, successful ones included: with burst 5, a sixth
// concurrent attempt of one key waits for nothing and is refused.
func (l *limiter) attempt(w http.ResponseWriter, r *http.Request, next filter.Handler, e *entry, pl *plan, now time.Time) error {
	avail, ok := e.reserve(now)
	h := w.Header()
	h[hdrLimit] = pl.limitHdr
	h[hdrReset] = itoa(pl.secondsUntil(avail, float64(pl.burst)))
	if !ok {
		h[hdrRemaining] = itoa(0)
		h[hdrRetryAfter] = itoa(max(pl.secondsUntil(avail, 1), 1))
		l.report(r)
		return limited(w, r, ReasonAttempts)
	}
	// Remaining is what is left if this attempt fails: the number of failures the
	// client may still make before it is refused.
	h[hdrRemaining] = itoa(int(math.Floor(max(avail, 0) + 1e-9)))

	sw := &statusWriter{rw: w}
	failed := true // a panic further on counts: its outcome is unknown
	defer func() { e.settle(l.now(), failed) }()
	err := next.ServeHTTP(sw, r)
	failed = slices.Contains(l.counted, sw.final(err))
	return err
}

// reserve sets a token aside for an attempt, if the bucket has one that is not
// already set aside, and returns the tokens left beside it (or, refused, the
// tokens less those set aside, which may be negative).
func (e *entry) reserve(now time.Time) (float64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	avail := e.lim.TokensAt(now) - float64(e.inflight)
	if avail < 1 {
		return avail, false
	}
	e.inflight++
	return avail - 1, true
}

// settle ends an attempt: its reserved token is taken when it failed, given back
// otherwise. The take is a reservation that is never cancelled, which may leave
// the bucket in debt (when a plan switch lowered its burst meanwhile) rather than
// forget a failure.
func (e *entry) settle(now time.Time, failed bool) {
	e.mu.Lock()
	e.inflight--
	if failed {
		e.lim.ReserveN(now, 1)
	}
	e.mu.Unlock()
}

// report records a refused attempt as a security event: the route and the kind
// of key, never the key itself (an API key, a subject).
func (l *limiter) report(r *http.Request) {
	remote := r.RemoteAddr
	if a := clientIP(r); a.IsValid() {
		remote = a.String()
	}
	detail := "ratelimit: " + ReasonAttempts + " route=" + l.route + " key=" + l.keyName
	if l.events != nil {
		l.events.SecurityEvent(EventAttemptsExceeded, remote, detail)
		return
	}
	if l.logLines.Allow() {
		l.log.LogAttrs(r.Context(), slog.LevelWarn, "ratelimit: attempt refused",
			slog.String("event", "security"), slog.String("kind", EventAttemptsExceeded),
			slog.String("remote", remote), slog.String("detail", detail))
	}
}

var _ http.Flusher = (*statusWriter)(nil)

// statusWriter notes the final status of a response on its way to the client. It
// is per request, used by one goroutine, as net/http requires.
type statusWriter struct {
	rw     http.ResponseWriter
	status int
}

func (w *statusWriter) Header() http.Header { return w.rw.Header() }

func (w *statusWriter) WriteHeader(code int) {
	// 1xx other than 101 are informational; the final status follows.
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.rw.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.rw.Write(b)
}

// FlushError is what http.ResponseController.Flush calls; a flush before any
// write sends 200.
func (w *statusWriter) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return http.NewResponseController(w.rw).Flush()
}

// Flush makes the writer an http.Flusher for code that type-asserts.
func (w *statusWriter) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach the server's writer for Hijack,
// deadlines and full duplex.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.rw }

// final is the status the client gets: the one written, else the one the core
// will answer err with (a later filter's 401, say), else 200.
func (w *statusWriter) final(err error) int {
	switch {
	case w.status != 0:
		return w.status
	case err != nil:
		s, _ := filter.StatusOf(err)
		return s
	}
	return http.StatusOK
}
