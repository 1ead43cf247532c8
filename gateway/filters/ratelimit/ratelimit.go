// Package ratelimit is the "ratelimit" filter: token buckets (golang.org/x/time/rate)
// per client key, where the key is the client's address as the core determined it
// (trusted proxies honoured; IPv6 grouped per /64), the value of a header such as an
// API key, or the authenticated caller (subject or a claim, from filter.Identity),
// with usage plans that give some keys other rates (by header, claim or key
// prefix). Over the limit a request gets 429 with RateLimit-Limit,
// RateLimit-Remaining, RateLimit-Reset (the separate fields of
// draft-ietf-httpapi-ratelimit-headers-06) and Retry-After (MS-SS-8).
//
// With countOnly it is a login-attempt threshold (MS-SS-11): only responses with
// the listed statuses (failed attempts) take a token; see attempts.go.
//
// The key table is bounded (maxKeys) under a flood of distinct keys: see table.
//
// It is not for: authenticating keys (a header key is whatever the client sends;
// put an auth filter first if keys must be real), limits shared between gateway
// replicas (each replica counts on its own), or stopping a flood spread over many
// keys (each new key starts with a full bucket).
package ratelimit

import (
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// Reasons reported for requests this filter refuses.
const (
	ReasonLimited         = "rate_limited"              // over the limit: 429
	ReasonAttempts        = "login_attempts_exceeded"   // countOnly, bucket empty: 429
	ReasonMissingKey      = "ratelimit_key_missing"     // missingKey: refuse and no key header: 400
	ReasonUnauthenticated = "ratelimit_unauthenticated" // missingKey: refuse, subject or claim key, no identity: 401
	ReasonMissingClaim    = "ratelimit_claim_missing"   // missingKey: refuse, identity without the subject or claim: 403
)

// EventAttemptsExceeded is the security event kind of a countOnly refusal.
const EventAttemptsExceeded = "login_attempts_exceeded"

// Response header names, in net/http's canonical form so that Header.Get finds them
// (the wire form is case-insensitive).
const (
	hdrLimit      = "Ratelimit-Limit"
	hdrRemaining  = "Ratelimit-Remaining"
	hdrReset      = "Ratelimit-Reset"
	hdrRetryAfter = "Retry-After"
)

// plan is one rate: the default (index 0) or a usage plan.
type plan struct {
	name     string
	limit    rate.Limit
	burst    int
	limitHdr []string // RateLimit-Limit's value, made once
}

// limiter is the filter. Its configuration is immutable after Factory; the table and
// the shared bucket are its only mutable state, and they lock for themselves.
type limiter struct {
	mode          keyMode
	keyName       string // the key's kind, for security events (never its value)
	header        string // canonical key header, byHeader only
	claim         string // claim path, byClaim only
	refuseMissing bool
	v4Bits        int // address grouping, byClientIP only
	v6Bits        int

	plans      []plan           // [0] is the default rate
	planHeader string           // canonical; "" when plans are chosen otherwise
	planClaim  string           // claim path; "" when plans are chosen otherwise
	byName     map[string]int32 // plan header or claim value -> index into plans
	prefixes   []int32          // plans by key prefix, longest name first

	counted []int // countOnly statuses; nil: every request takes a token

	table  *table
	digest digester
	shared *entry // requests without a key (none sent, or no parsable address)

	route    string
	events   filter.Events
	log      *slog.Logger  // countOnly without events only
	logLines *rate.Limiter // bounds those log lines

	// now is the clock; a field so that tests can refill buckets without sleeping.
	now func() time.Time
}

var _ filter.Filter = (*limiter)(nil)

// Handle finds the request's bucket and plan, then takes a token (or, with
// countOnly, reserves one for the attempt) or answers 429.
func (l *limiter) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	now := l.now()
	var id *filter.Identity
	if l.mode == bySubject || l.mode == byClaim || l.planClaim != "" {
		id, _ = filter.IdentityFrom(r.Context())
	}
	p := l.planOf(r, id)
	e, err := l.bucket(w, r, id, &p)
	if err != nil {
		return err
	}
	pl := &l.plans[p]
	e.setPlan(now, p, pl)
	if l.counted != nil {
		return l.attempt(w, r, next, e, pl, now)
	}

	h := w.Header()
	if e.lim.AllowN(now, 1) {
		// Another request may take a token between these two calls; the headers are
		// advice to the client, and one token off is within what they promise.
		tokens := e.lim.TokensAt(now)
		h[hdrLimit] = pl.limitHdr
		h[hdrRemaining] = itoa(int(math.Floor(tokens + 1e-9)))
		h[hdrReset] = itoa(pl.secondsUntil(tokens, float64(pl.burst)))
		return next.ServeHTTP(w, r)
	}
	tokens := e.lim.TokensAt(now)
	h[hdrLimit] = pl.limitHdr
	h[hdrRemaining] = itoa(0)
	h[hdrReset] = itoa(pl.secondsUntil(tokens, float64(pl.burst)))
	h[hdrRetryAfter] = itoa(max(pl.secondsUntil(tokens, 1), 1))
	return limited(w, r, ReasonLimited)
}

// limited answers a request over the limit. The core's error answer sets
// Retry-After to "1" for every 429, which would hide the real wait, so plain HTTP
// requests are answered here, in the core's format (same body, content type and
// access-log reason); gRPC requests go to the core, whose gRPC answer (HTTP 200,
// grpc-status 14) leaves Retry-After and the RateLimit fields as set.
func limited(w http.ResponseWriter, r *http.Request, reason string) error {
	if isGRPC(r) {
		return &filter.Error{Status: http.StatusTooManyRequests, Reason: reason}
	}
	if info := proxy.InfoFrom(r.Context()); info != nil && info.Reason == "" {
		info.Reason = reason
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = io.WriteString(w, "429 Too Many Requests: "+reason+"\n")
	return nil
}

// planOf returns the plan named by the plan header or the plan claim, or the
// default (also for a value that names no plan).
func (l *limiter) planOf(r *http.Request, id *filter.Identity) int32 {
	var name string
	switch {
	case l.planHeader != "":
		v := r.Header[l.planHeader]
		if len(v) == 0 {
			return 0
		}
		name = v[0]
	case l.planClaim != "":
		var ok bool
		if name, ok = id.Claim(l.planClaim); !ok { // nil id: false
			return 0
		}
	default:
		return 0
	}
	if p, ok := l.byName[name]; ok {
		return p
	}
	return 0
}

// prefixPlan returns the plan whose name is the longest prefix of the key.
func (l *limiter) prefixPlan(k string) int32 {
	for _, p := range l.prefixes {
		if strings.HasPrefix(k, l.plans[p].name) {
			return p
		}
	}
	return 0
}

// secondsUntil is how many whole seconds (rounded up) the bucket needs to go from
// tokens to want at the plan's rate.
func (pl *plan) secondsUntil(tokens, want float64) int {
	if tokens >= want {
		return 0
	}
	s := math.Ceil((want - tokens) / float64(pl.limit))
	if s > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(s)
}

// isGRPC reports whether the request is a gRPC call (not gRPC-Web, which the core
// answers as plain HTTP).
func isGRPC(r *http.Request) bool {
	ct := r.Header["Content-Type"]
	if len(ct) == 0 {
		return false
	}
	rest, ok := strings.CutPrefix(ct[0], "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// smallInts holds header values for 0..1023, so that the headers of an allowed
// request cost no allocation. The slices have no spare capacity, so an append by
// anyone else copies rather than writing into them.
var smallInts = sync.OnceValue(func() [][]string {
	s := make([][]string, 1024)
	for i := range s {
		s[i] = []string{strconv.Itoa(i)}
	}
	return s
})

func itoa(n int) []string {
	if t := smallInts(); n >= 0 && n < len(t) {
		return t[n]
	}
	return []string{strconv.Itoa(n)}
}
