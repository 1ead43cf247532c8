// Package proxy forwards one request to an upstream cluster: it builds the
// outbound request (hop-by-hop fields dropped, X-Forwarded-* set, rewrites), picks
// an endpoint through the cluster's load balancer and circuit breaker, applies
// timeouts and retries (with backoff, a retry budget and idempotency rules), and
// streams the response back with its trailers, or, for a protocol upgrade the
// rule allows (WebSocket), relays the 101 and tunnels the connection (upgrade.go,
// tunnel.go).
//
// It is not for routing (gateway/route), for choosing endpoints (gateway/upstream)
// or for holding connections (gateway/transport).
package proxy

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/internal/grpctimeout"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/transport"
	"github.com/portcullis/portcullis/gateway/upstream"
)

// Info is the per-request record the core keeps in the request context: what the
// proxy knows about the client, and what it learns while forwarding (for the access
// log and metrics).
type Info struct {
	Forwarding
	Listener string
	Route    string
	Start    time.Time
	// Set while forwarding:
	Cluster  string
	Upstream string // endpoint address of the last attempt
	Attempts int
	Reason   string // why the request failed, if it did
	// Set when the request became a tunnel (a 101 to an upgrade): the bytes
	// it carried from the client and to the client.
	TunnelBytesIn, TunnelBytesOut int64
}

type infoKey struct{}

// WithInfo returns ctx carrying info.
func WithInfo(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, infoKey{}, info)
}

// InfoFrom returns the request's Info, or nil outside the core.
func InfoFrom(ctx context.Context) *Info {
	i, _ := ctx.Value(infoKey{}).(*Info)
	return i
}

// Upstream is a cluster as the proxy uses it: the upstream.Cluster plus the
// counters of the retry budget. It lives as long as the cluster does, across
// config snapshots.
type Upstream struct {
	*upstream.Cluster
	Stats   Stats
	active  atomic.Int64
	retries atomic.Int64
	tunnels atomic.Int64 // open upgraded connections (upgrade.go)
}

// Stats receives one sample per upstream attempt. Nil-safe implementations only.
type Stats interface {
	Done(code int, d time.Duration)
	DoneError(reason string, d time.Duration)
	Retry()
}

// Backend is one weighted cluster of a forward action.
type Backend struct {
	Upstream *Upstream
	Weight   int
}

// Forwarder is the compiled forward action of one route rule. Immutable.
type Forwarder struct {
	backends    []Backend
	totalWeight int
	timeout     time.Duration
	perTry      time.Duration
	retry       retryPolicy
	maxBody     int64
	hostRewrite string
	prefix      string // the rule's matched prefix, for prefix rewrites
	newPrefix   *string
	regex       *regexp.Regexp
	regexSub    string
	inject      func(context.Context, http.Header)
	upgrades    []string      // protocols tunnelled (upgrade.go); nil: none
	upgradeIdle time.Duration // idle timeout of those tunnels
}

// SetInjector sets the function that writes trace context (traceparent) into the
// upstream request's header. Call before the forwarder serves.
func (f *Forwarder) SetInjector(inject func(context.Context, http.Header)) { f.inject = inject }

// Defaults of a forward action.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultMaxBodySize = 16 << 20
)

// NewForwarder compiles a forward action. matchedPrefix is the rule's path prefix
// (for rewrite.prefix); maxBody is the listener's default body limit (0: default).
func NewForwarder(fw *config.Forward, backends []Backend, matchedPrefix string, maxBody int64) (*Forwarder, error) {
	f := &Forwarder{backends: backends, timeout: DefaultTimeout, prefix: matchedPrefix, maxBody: maxBody}
	if f.maxBody == 0 {
		f.maxBody = DefaultMaxBodySize
	}
	for _, b := range backends {
		f.totalWeight += b.Weight
	}
	if fw.Timeout != nil && fw.Timeout.D() > 0 {
		f.timeout = fw.Timeout.D()
	}
	if fw.PerTryTimeout != nil {
		f.perTry = fw.PerTryTimeout.D()
	}
	if fw.MaxRequestBodyBytes != nil {
		f.maxBody = *fw.MaxRequestBodyBytes
	}
	f.retry = newRetryPolicy(fw.Retry)
	if len(fw.Upgrades) > 0 {
		f.upgrades = fw.Upgrades
		f.upgradeIdle = DefaultUpgradeIdleTimeout
		if d := fw.UpgradeIdleTimeout; d != nil && d.D() > 0 {
			f.upgradeIdle = d.D()
		}
	}
	if rw := fw.Rewrite; rw != nil {
		f.hostRewrite = rw.Host
		f.newPrefix = rw.Prefix
		if rw.Regex != nil {
			re, err := regexp.Compile(rw.Regex.Pattern)
			if err != nil {
				return nil, &FieldError{Field: "rewrite.regex.pattern", Err: err}
			}
			f.regex, f.regexSub = re, rw.Regex.Substitution
		}
	}
	return f, nil
}

// FieldError names the field of a forward action that failed to compile.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

var _ filter.Handler = (*Forwarder)(nil)

func (f *Forwarder) pick() *Upstream {
	if len(f.backends) == 1 {
		return f.backends[0].Upstream
	}
	n := rand.IntN(f.totalWeight)
	for _, b := range f.backends {
		if n < b.Weight {
			return b.Upstream
		}
		n -= b.Weight
	}
	return f.backends[len(f.backends)-1].Upstream
}

// ServeHTTP forwards r. It returns a *filter.Error when the client should get an
// error status; after the response has started, failures abort the stream.
func (f *Forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	info := InfoFrom(r.Context())
	if info == nil {
		info = &Info{Forwarding: Forwarding{Scheme: "http", Host: r.Host}}
	}
	if f.maxBody > 0 && r.ContentLength > f.maxBody {
		return &filter.Error{Status: http.StatusRequestEntityTooLarge, Reason: "body_too_large"}
	}
	up := f.pick()
	info.Cluster = up.Name()
	release, ok := up.AcquireRequest()
	if !ok {
		return &filter.Error{Status: http.StatusServiceUnavailable, Reason: "upstream_overflow"}
	}
	defer release()
	up.active.Add(1)
	defer up.active.Add(-1)

	var body io.ReadCloser
	var limited *limitedBody
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = r.Body
		if f.maxBody > 0 && r.ContentLength < 0 {
			limited = &limitedBody{rc: r.Body, left: f.maxBody}
			body = limited
		}
	}
	offer := ""
	if f.upgrades != nil && body == nil {
		offer = f.upgradeOffer(w, r)
	}
	out := f.outbound(r, info, body)
	if offer != "" {
		// Connection and Upgrade are hop-by-hop, dropped by outbound; an
		// upgrade this rule tunnels asks the upstream for the same switch.
		out.Header["Connection"] = connectionUpgrade
		out.Header["Upgrade"] = []string{offer}
	}
	if f.inject != nil {
		f.inject(r.Context(), out.Header)
	}
	timeout := f.timeout
	if d, ok := grpctimeout.Parse(r.Header.Get("Grpc-Timeout")); ok && d < timeout {
		// A gRPC client's own deadline bounds the upstream call too, so the proxy
		// answers DEADLINE_EXCEEDED itself rather than racing the upstream's reset.
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	var exclude *upstream.Endpoint
	// retrySlot holds the breaker's retry slot and the budget share while a retry
	// is in flight; it is given back when that attempt ends.
	retrySlot := func() {}
	defer func() { retrySlot() }()
	for attempt := 0; ; attempt++ {
		ep, err := up.Pick(r, info.ClientIP, exclude)
		if err != nil {
			info.Reason = "no_healthy_upstream"
			return &filter.Error{Status: http.StatusServiceUnavailable, Reason: "no_healthy_upstream", Err: err}
		}
		info.Upstream, info.Attempts = ep.Addr, attempt+1
		tryCtx, tryCancel := ctx, context.CancelFunc(nil)
		if f.perTry > 0 {
			tryCtx, tryCancel = context.WithTimeout(ctx, f.perTry)
		}
		out = out.WithContext(tryCtx)
		out.URL.Host = ep.Addr
		start := time.Now()
		ep.Begin()
		resp, err := ep.Pool.(transport.Pool).RoundTrip(out)
		cond := classify(resp, err, r.Context(), ctx)
		retrySlot()
		retrySlot = func() {}
		if f.retry.shouldRetry(cond, resp, r, attempt, body != nil) {
			if release, ok := up.tryRetryBudget(f.retry); ok {
				ep.End(cond.result())
				up.stats().Retry()
				recordAttempt(up, resp, err, cond, time.Since(start))
				if resp != nil {
					resp.Body.Close()
				}
				if tryCancel != nil {
					tryCancel()
				}
				retrySlot = release
				if !f.retry.backoff(ctx, attempt) {
					return timeoutOrGone(r, info)
				}
				exclude = ep
				continue
			}
		}
		recordAttempt(up, resp, err, cond, time.Since(start))
		if err != nil {
			ep.End(cond.result())
			if tryCancel != nil {
				tryCancel()
			}
			if limited != nil && limited.exceeded {
				return &filter.Error{Status: http.StatusRequestEntityTooLarge, Reason: "body_too_large"}
			}
			return f.failure(r, info, cond, err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// Runs the tunnel: the handshake's timeouts no longer apply.
			cond, err = f.switchProtocols(w, resp, info, up, offer, up.StickyCookie(ep, r))
			ep.End(cond.result())
			if tryCancel != nil {
				tryCancel()
			}
			return err
		}
		err = copyResponse(w, resp, up.StickyCookie(ep, r))
		if err != nil && r.Context().Err() != nil {
			cond, err = condClientGone, errClientGone
		} else if IsStreamError(err) {
			cond, info.Reason = condReset, "upstream_stream_failed"
			err = &filter.Error{Status: http.StatusBadGateway, Reason: info.Reason, Err: err}
		}
		ep.End(cond.result())
		if tryCancel != nil {
			tryCancel()
		}
		return err
	}
}

func (up *Upstream) stats() Stats {
	if up.Stats == nil {
		return nopStats{}
	}
	return up.Stats
}

type nopStats struct{}

func (nopStats) Done(int, time.Duration)         {}
func (nopStats) DoneError(string, time.Duration) {}
func (nopStats) Retry()                          {}

func recordAttempt(up *Upstream, resp *http.Response, err error, c condition, d time.Duration) {
	if err != nil {
		up.stats().DoneError(c.reason(), d)
		return
	}
	up.stats().Done(resp.StatusCode, d)
}

func timeoutOrGone(r *http.Request, info *Info) error {
	if r.Context().Err() != nil {
		info.Reason = "client_gone"
		return errClientGone
	}
	info.Reason = "upstream_timeout"
	return &filter.Error{Status: http.StatusGatewayTimeout, Reason: "upstream_timeout"}
}

// errClientGone means the client went away: nothing can be answered.
var errClientGone = &filter.Error{Status: 499, Reason: "client_gone"}

func (f *Forwarder) failure(r *http.Request, info *Info, c condition, err error) error {
	if r.Context().Err() != nil {
		info.Reason = "client_gone"
		return errClientGone
	}
	info.Reason = c.reason()
	switch c {
	case condTimeout:
		return &filter.Error{Status: http.StatusGatewayTimeout, Reason: "upstream_timeout", Err: err}
	case condConnect:
		return &filter.Error{Status: http.StatusServiceUnavailable, Reason: "upstream_connect_failure", Err: err}
	case condOverflow:
		return &filter.Error{Status: http.StatusServiceUnavailable, Reason: "upstream_overflow", Err: err}
	default:
		return &filter.Error{Status: http.StatusBadGateway, Reason: "upstream_reset", Err: err}
	}
}

// outbound builds the request sent upstream. It never modifies r.
func (f *Forwarder) outbound(r *http.Request, info *Info, body io.ReadCloser) *http.Request {
	path, rawPath := r.URL.Path, r.URL.RawPath
	if f.newPrefix != nil || f.regex != nil {
		// Rewrite the escaped form, so that an escaped slash the listener kept
		// stays escaped (and is not turned into a separator by the rewrite).
		esc := r.URL.EscapedPath()
		switch {
		case f.newPrefix != nil && strings.HasPrefix(esc, f.prefix):
			esc = joinPath(*f.newPrefix, strings.TrimPrefix(esc, f.prefix))
		case f.regex != nil:
			esc = f.regex.ReplaceAllString(esc, f.regexSub)
		}
		if p, err := url.PathUnescape(esc); err == nil {
			path, rawPath = p, esc
		}
	}
	host := r.Host
	if f.hostRewrite != "" {
		host = f.hostRewrite
	}
	out := &http.Request{
		Method:        r.Method,
		URL:           &url.URL{Scheme: "http", Path: path, RawPath: rawPath, RawQuery: r.URL.RawQuery},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        copyRequestHeader(r.Header, &info.Forwarding, 1),
		Body:          body,
		ContentLength: r.ContentLength,
		Host:          host,
		Trailer:       r.Trailer,
	}
	if body == nil {
		out.ContentLength = 0
	}
	return out
}

// limitedBody fails a body of unknown length once it passes the limit.
type limitedBody struct {
	rc       io.ReadCloser
	left     int64
	exceeded bool
}

var errBodyTooLarge = errors.New("request body too large")

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more than the limit tells "exactly at the limit" from "over".
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			b.exceeded = true
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// joinPath puts a rewritten prefix and the rest of a path together with exactly one
// slash between them, and never returns an empty path.
func joinPath(prefix, rest string) string {
	switch {
	case strings.HasSuffix(prefix, "/") && strings.HasPrefix(rest, "/"):
		rest = rest[1:]
	case prefix != "" && !strings.HasSuffix(prefix, "/") && rest != "" && !strings.HasPrefix(rest, "/"):
		rest = "/" + rest
	}
	p := prefix + rest
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return p
}
