package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/transport"
	"github.com/portcullis/portcullis/gateway/upstream"
)

// condition is the outcome class of one attempt.
type condition int

const (
	condOK condition = iota
	cond5xx
	condGateway // 502, 503, 504 from the upstream
	condConnect // the connection could not be made: nothing was sent
	condOverflow
	condReset // the upstream failed after the request was (maybe) sent
	condTimeout
	condClientGone
)

func (c condition) reason() string {
	switch c {
	case condConnect:
		return "connect_failure"
	case condOverflow:
		return "overflow"
	case condReset:
		return "reset"
	case condTimeout:
		return "timeout"
	case condClientGone:
		return "client_gone"
	}
	return ""
}

// result maps a condition to what passive outlier detection should learn.
func (c condition) result() upstream.Result {
	switch c {
	case condOK:
		return upstream.Success
	case cond5xx:
		return upstream.Status5xx
	case condGateway:
		return upstream.GatewayError
	case condConnect:
		return upstream.ConnectFailure
	case condTimeout:
		return upstream.Timeout
	case condReset:
		return upstream.Reset
	}
	return upstream.Canceled // overflow and client gone say nothing about the endpoint
}

func classify(resp *http.Response, err error, client, overall context.Context) condition {
	if err == nil {
		switch s := resp.StatusCode; {
		case s == 502 || s == 503 || s == 504:
			return condGateway
		case s >= 500:
			return cond5xx
		}
		return condOK
	}
	var ce *transport.ConnectError
	switch {
	case client.Err() != nil:
		return condClientGone
	case pastDeadline(overall):
		return condTimeout // whatever the transport said, the deadline explains it
	case errors.Is(err, transport.ErrConnLimit):
		return condOverflow
	case errors.As(err, &ce):
		return condConnect // nothing was sent, whatever stopped the dial
	case errors.Is(err, context.DeadlineExceeded):
		return condTimeout // the per-try timeout; the request may have been seen
	}
	return condReset
}

type retryPolicy struct {
	attempts       int
	on             map[condition]bool
	statuses       map[int]bool
	base, max      time.Duration
	budgetPercent  float64
	minConcurrency int64
	nonIdempotent  bool
}

func newRetryPolicy(rp *config.RetryPolicy) retryPolicy {
	p := retryPolicy{base: 25 * time.Millisecond, max: 250 * time.Millisecond, budgetPercent: 20, minConcurrency: 3}
	if rp == nil {
		return p
	}
	p.attempts = rp.Attempts
	p.nonIdempotent = rp.RetryNonIdempotent
	on := rp.On
	if len(on) == 0 {
		on = []string{config.RetryOnConnectFailure, config.RetryOnReset, config.RetryOnGatewayError}
	}
	p.on = map[condition]bool{}
	for _, c := range on {
		switch c {
		case config.RetryOnConnectFailure:
			p.on[condConnect] = true
		case config.RetryOnReset:
			p.on[condReset] = true
		case config.RetryOnGatewayError:
			p.on[condGateway] = true
		case config.RetryOn5xx:
			p.on[condConnect], p.on[condReset], p.on[condGateway], p.on[cond5xx] = true, true, true, true
		}
	}
	if len(rp.Statuses) > 0 {
		p.statuses = map[int]bool{}
		for _, s := range rp.Statuses {
			p.statuses[s] = true
		}
	}
	if rp.BackoffBase != nil {
		p.base = rp.BackoffBase.D()
	}
	if rp.BackoffMax != nil {
		p.max = rp.BackoffMax.D()
	}
	if rp.BudgetPercent != nil {
		p.budgetPercent = *rp.BudgetPercent
	}
	if rp.MinRetryConcurrency != nil {
		p.minConcurrency = int64(*rp.MinRetryConcurrency)
	}
	return p
}

// idempotent methods (RFC 9110 §9.2.2) may be sent twice without harm.
func idempotent(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// shouldRetry decides whether the attempt that ended in c is tried again.
// hasBody: a body once sent cannot be sent again, so only connect failures (where
// nothing was sent) are retried for requests with a body.
func (p *retryPolicy) shouldRetry(c condition, resp *http.Response, r *http.Request, attempt int, hasBody bool) bool {
	if attempt >= p.attempts || c == condOK && resp == nil {
		return false
	}
	match := p.on[c]
	if c == condTimeout {
		// A per-try timeout is retried where a gateway error or a reset would be
		// (the upstream may be stuck, another endpoint may not).
		match = p.on[condGateway] || p.on[condReset]
	}
	if !match && resp != nil && p.statuses[resp.StatusCode] {
		match = true
	}
	if !match {
		return false
	}
	if c == condConnect {
		return true
	}
	if hasBody {
		return false
	}
	return p.nonIdempotent || idempotent(r.Method)
}

// tryRetryBudget takes a retry slot if the budget allows: at most budgetPercent of
// the cluster's active requests may be retries in flight (with a floor of
// minConcurrency), and the circuit breaker's maxRetries holds. The caller calls
// release when the retried attempt has ended.
func (up *Upstream) tryRetryBudget(p retryPolicy) (release func(), ok bool) {
	limit := int64(float64(up.active.Load()) * p.budgetPercent / 100)
	if limit < p.minConcurrency {
		limit = p.minConcurrency
	}
	if up.retries.Add(1) > limit {
		up.retries.Add(-1)
		return nil, false
	}
	breaker, ok := up.AcquireRetry()
	if !ok {
		up.retries.Add(-1)
		return nil, false
	}
	return func() { breaker(); up.retries.Add(-1) }, true
}

// backoff sleeps with full jitter, rand(0, min(max, base*2^attempt)); false when
// ctx ended first.
func (p *retryPolicy) backoff(ctx context.Context, attempt int) bool {
	d := p.base << min(attempt, 16)
	if d > p.max || d <= 0 {
		d = p.max
	}
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(rand.N(d) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pastDeadline reports whether ctx's deadline has passed, even if its timer has not
// fired yet (a busy machine runs timers late, and the upstream's own reset for the
// same deadline can arrive first).
func pastDeadline(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}
