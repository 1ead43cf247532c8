// Package mirror is the "mirror" filter: it sends a copy of a share of a route's
// requests to a second cluster (shadowing), to try a new version on real traffic.
// The copy is sent in the background and its response thrown away; the request
// itself is served as if the filter were not there: never delayed, never failed.
//
// It is not for: comparing responses (they are discarded), for requests with large
// or streamed bodies (a body is buffered up to a cap, above which the request is not
// mirrored), or for delivery guarantees (copies are skipped under load and bounded
// by a timeout).
package mirror

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// Stats counts what the filter did since it was built. Every sampled request ends
// in exactly one of the counters.
type Stats struct {
	Mirrored              uint64 // copies sent whose handler returned no error
	Failed                uint64 // copies sent whose handler returned an error (timeouts included) or panicked
	SkippedInFlight       uint64 // not mirrored: maxInFlight copies were already pending
	SkippedBodyTooLarge   uint64 // not mirrored: the body was larger than maxBodyBytes
	SkippedIncompleteBody uint64 // not mirrored: the request's body was not read to its end (or failed)
	SkippedClosed         uint64 // not mirrored: the filter was closed (its snapshot retired)
}

// mirror is shared by every request of its snapshot; its fields are set by Factory,
// and what changes (counters, the in-flight count) is atomic.
type mirror struct {
	cluster     string
	route       string
	upstream    filter.Handler
	fraction    float64
	maxBody     int64
	maxInFlight int64
	timeout     time.Duration
	log         *slog.Logger

	inFlight atomic.Int64 // copies being buffered or sent; bounds memory and goroutines

	mirrored, failed, skippedInFlight, skippedTooLarge, skippedIncomplete, skippedClosed atomic.Uint64

	// Close cancels base, which ends pending copies, and waits for them, so that no
	// copy uses the snapshot's clusters after the snapshot is closed.
	base   context.Context
	stop   context.CancelFunc
	mu     sync.RWMutex // orders wg.Go against Close's wg.Wait
	closed bool
	wg     sync.WaitGroup
}

func (m *mirror) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	if m.fraction <= 0 || (m.fraction < 1 && rand.Float64() >= m.fraction) {
		return next.ServeHTTP(w, r)
	}
	hasBody := r.Body != nil && r.Body != http.NoBody
	if hasBody && r.ContentLength > m.maxBody {
		m.skippedTooLarge.Add(1) // known to be too large: do not even start
		return next.ServeHTTP(w, r)
	}
	// The slot is taken before buffering, so that maxInFlight also bounds the memory
	// held by bodies being copied, not only the copies being sent.
	if m.inFlight.Add(1) > m.maxInFlight {
		m.inFlight.Add(-1)
		m.skippedInFlight.Add(1)
		return next.ServeHTTP(w, r)
	}
	shadow := m.shadowRequest(r)
	if !hasBody {
		m.launch(shadow, nil)
		return next.ServeHTTP(w, r)
	}
	t := &tee{body: r.Body, m: m, shadow: shadow, length: r.ContentLength}
	if r.ContentLength > 0 {
		t.buf = make([]byte, 0, r.ContentLength)
	}
	// A shallow copy carries the tee; the inbound request is the caller's.
	r2 := new(http.Request)
	*r2 = *r
	r2.Body = t
	err := next.ServeHTTP(w, r2)
	t.finish()
	return err
}

// shadowRequest copies what the copy needs while the request is still as it came
// in: later steps may read the body, but the header map and URL are copied here so
// the copy never shares a map with the primary. Its context keeps the request's
// values (trace IDs) but not its cancellation: the client's request ends long
// before the copy may.
func (m *mirror) shadowRequest(r *http.Request) *http.Request {
	ctx := context.WithoutCancel(r.Context())
	if info := proxy.InfoFrom(ctx); info != nil {
		// The forwarder writes the cluster, endpoint and failure reason into the
		// request's Info, which the primary's access log and metrics read: the copy
		// gets its own, with the same client facts, so that its X-Forwarded-* are
		// the primary's and the two never write to one record.
		ctx = proxy.WithInfo(ctx, &proxy.Info{Forwarding: info.Forwarding, Listener: info.Listener, Route: info.Route, Start: time.Now()})
	}
	s := r.Clone(ctx)
	s.Host = shadowHost(r.Host)
	// The whole body is buffered before the copy is sent, so there is nothing to
	// wait for; and the body's framing is set again from the buffer.
	s.Header.Del("Expect")
	s.TransferEncoding = nil
	s.Trailer = nil
	s.Body = http.NoBody
	s.GetBody = nil
	s.ContentLength = 0
	return s
}

// shadowHost adds "-shadow" to the host name, before any port, as Envoy does, so
// that the receiving side can tell copies from real traffic:
// "api.example.com:8443" becomes "api.example.com-shadow:8443".
func shadowHost(h string) string {
	if h == "" {
		return ""
	}
	if h[0] == '[' { // IPv6 literal
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[:i+1] + "-shadow" + h[i+1:]
		}
		return h + "-shadow"
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		return h[:i] + "-shadow" + h[i:]
	}
	return h + "-shadow"
}

// launch sends the copy in the background; the in-flight slot taken in Handle is
// released when the copy ends.
func (m *mirror) launch(s *http.Request, body []byte) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		m.release()
		m.skippedClosed.Add(1)
		return
	}
	m.wg.Go(func() { m.send(s, body) })
}

func (m *mirror) release() { m.inFlight.Add(-1) }

// send runs on its own goroutine. A panic in the upstream handler would otherwise
// take the whole process down; the primary request must never pay for its copy.
func (m *mirror) send(s *http.Request, body []byte) {
	defer m.release()
	defer func() {
		if p := recover(); p != nil {
			m.failed.Add(1)
			m.log.Error("mirror: the shadow request panicked", "route", m.route, "cluster", m.cluster, "panic", p)
		}
	}()
	ctx, cancel := context.WithTimeout(s.Context(), m.timeout)
	defer cancel()
	defer context.AfterFunc(m.base, cancel)()
	s = s.WithContext(ctx)
	if len(body) > 0 {
		s.Body = io.NopCloser(bytes.NewReader(body))
		s.ContentLength = int64(len(body))
		s.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	if err := m.upstream.ServeHTTP(&discard{h: http.Header{}}, s); err != nil {
		m.failed.Add(1)
		return
	}
	m.mirrored.Add(1)
}

// Stats returns the counters. The core has no metrics hook for filters yet; this is
// the place to read them from when it does.
func (m *mirror) Stats() Stats {
	return Stats{
		Mirrored:              m.mirrored.Load(),
		Failed:                m.failed.Load(),
		SkippedInFlight:       m.skippedInFlight.Load(),
		SkippedBodyTooLarge:   m.skippedTooLarge.Load(),
		SkippedIncompleteBody: m.skippedIncomplete.Load(),
		SkippedClosed:         m.skippedClosed.Load(),
	}
}

// Close is called when the filter's snapshot is retired: it stops new copies,
// cancels the pending ones and waits for them to return.
func (m *mirror) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.stop()
	m.wg.Wait()
	return nil
}

// tee copies the body as the primary reads it. Its state is guarded by a mutex
// because the primary's transport may still be reading the body on another
// goroutine when the handler returns.
type tee struct {
	body   io.ReadCloser
	m      *mirror
	shadow *http.Request
	length int64 // the request's ContentLength; -1 when unknown

	mu    sync.Mutex
	buf   []byte
	state teeState
}

type teeState uint8

const (
	buffering teeState = iota
	launched           // the whole body was read; the copy is sent
	abandoned          // too large, failed or not read to the end: no copy
)

func (t *tee) Read(p []byte) (int, error) {
	n, err := t.body.Read(p)
	if n > 0 || err != nil {
		t.observe(p[:n], err)
	}
	return n, err
}

func (t *tee) Close() error { return t.body.Close() }

func (t *tee) observe(b []byte, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != buffering {
		return
	}
	if len(b) > 0 {
		if int64(len(t.buf))+int64(len(b)) > t.m.maxBody {
			t.abandon(&t.m.skippedTooLarge)
			return
		}
		t.grow(len(b))
		t.buf = append(t.buf, b...)
	}
	switch {
	// A reader that knows the length (the core's transport copies exactly
	// ContentLength bytes) may never ask for the EOF after the last byte.
	case err == io.EOF, t.length > 0 && int64(len(t.buf)) == t.length:
		t.state = launched
		t.m.launch(t.shadow, t.buf)
		t.buf = nil // the copy owns it now
	case err != nil:
		t.abandon(&t.m.skippedIncomplete)
	}
}

// grow makes room for n more bytes without ever reserving more than maxBody, which
// append's doubling would do.
func (t *tee) grow(n int) {
	need := len(t.buf) + n
	if need <= cap(t.buf) {
		return
	}
	c := max(2*cap(t.buf), need, 512)
	c = int(min(int64(c), t.m.maxBody))
	nb := make([]byte, len(t.buf), c)
	copy(nb, t.buf)
	t.buf = nb
}

// finish runs when the primary's handler returns: a body not read to its end by
// then is not mirrored, since a copy with part of a body would be a different request.
func (t *tee) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state == buffering {
		t.abandon(&t.m.skippedIncomplete)
	}
}

func (t *tee) abandon(counter *atomic.Uint64) {
	t.state = abandoned
	t.buf = nil
	t.shadow = nil
	counter.Add(1)
	t.m.release()
}

// discard is the shadow's ResponseWriter: the copy's response is thrown away.
// It is a Flusher so that a streaming upstream handler does not take the missing
// flush for an error.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header       { return d.h }
func (*discard) Write(b []byte) (int, error) { return len(b), nil }
func (*discard) WriteHeader(int)             {}
func (*discard) Flush()                      {}
