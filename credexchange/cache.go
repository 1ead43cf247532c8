package credexchange

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Token is an access token as the egress sends it.
type Token struct {
	// Type is the scheme of the Authorization header ("Bearer").
	Type  string
	Value Secret
	// Expiry is when the issuer says the token stops working; zero: it did not say.
	Expiry time.Time
}

// HeaderValue is the Authorization header value carrying the token.
func (t Token) HeaderValue() string { return t.Type + " " + t.Value.Reveal() }

// Timing of a cached token, relative to its lifetime L (expiry minus fetch time).
const (
	// DefaultRefreshBefore: a token is refreshed (in the background, while it
	// is still handed out) this long before it expires, or at L/2 when that is
	// sooner.
	DefaultRefreshBefore = time.Minute
	// DefaultLifetime is assumed for a token whose response has no expires_in.
	DefaultLifetime = 5 * time.Minute
	// maxSkew: a token is no longer handed out this long before its expiry (or
	// L/10 when that is shorter), for clock skew and the request's own latency.
	maxSkew = 10 * time.Second
	// Failed fetches are not retried for a back-off that doubles from
	// minBackoff to maxBackoff, so that a dead endpoint is not hammered by
	// every request.
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// fetchFunc fetches one token; ctx carries the fetch timeout.
type fetchFunc func(ctx context.Context) (Token, error)

// cell caches one token: it hands out the cached token while it is usable,
// starts one background refresh once it is due, and makes every request that
// finds no usable token wait for the same single fetch.
type cell struct {
	clk   *clock
	fetch fetchFunc
	// notAfter caps how long a token may be used (the subject token's expiry,
	// for a token exchange); zero: no cap.
	notAfter time.Time

	mu          sync.Mutex
	tok         Token
	have        bool
	refreshAt   time.Time
	usableUntil time.Time
	inflight    *call
	failedUntil time.Time // no new fetch before this, after a failure
	backoff     time.Duration
	lastErr     error
}

type call struct {
	done chan struct{}
	tok  Token
	err  error
}

// clock is what every cell of a source shares: the time, the lifetime of
// background fetches, and the timing settings.
type clock struct {
	now           func() time.Time
	ctx           context.Context // cancelled by Close
	timeout       time.Duration
	refreshBefore time.Duration
	onRefreshFail func(error) // a background refresh failed; the cached token stays in use
}

var errClosed = errors.New("credential source closed")

// get returns a usable token, fetching one if there is none.
func (c *cell) get(ctx context.Context) (Token, error) {
	c.mu.Lock()
	now := c.clk.now()
	if c.have && now.Before(c.usableUntil) {
		tok := c.tok
		if !now.Before(c.refreshAt) && c.inflight == nil && !now.Before(c.failedUntil) {
			c.start(now)
		}
		c.mu.Unlock()
		return tok, nil
	}
	if c.inflight == nil && now.Before(c.failedUntil) {
		err := c.lastErr
		c.mu.Unlock()
		return Token{}, err
	}
	cl := c.inflight
	if cl == nil {
		cl = c.start(now)
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.tok, cl.err
	case <-ctx.Done():
		return Token{}, ctx.Err()
	}
}

// start runs one fetch in its own goroutine, bound to the source's lifetime
// rather than to the request that caused it, so that a caller giving up does
// not fail the fetch for everyone waiting. c.mu is held.
func (c *cell) start(now time.Time) *call {
	cl := &call{done: make(chan struct{})}
	c.inflight = cl
	background := c.have && now.Before(c.usableUntil)
	go func() {
		ctx, cancel := context.WithTimeout(c.clk.ctx, c.clk.timeout)
		tok, err := c.fetch(ctx)
		cancel()
		if err == nil && c.clk.ctx.Err() != nil {
			err = errClosed
		}
		c.mu.Lock()
		done := c.clk.now()
		if err == nil {
			c.store(tok, done)
			c.backoff, c.lastErr = 0, nil
			cl.tok = tok
		} else {
			c.backoff = min(max(2*c.backoff, minBackoff), maxBackoff)
			c.failedUntil, c.lastErr = done.Add(c.backoff), err
			cl.err = err
		}
		c.inflight = nil
		c.mu.Unlock()
		close(cl.done)
		if err != nil && background && c.clk.onRefreshFail != nil {
			c.clk.onRefreshFail(err)
		}
	}()
	return cl
}

// store caches tok, fetched at now. c.mu is held.
func (c *cell) store(tok Token, now time.Time) {
	exp := tok.Expiry
	if exp.IsZero() || !exp.After(now) {
		exp = now.Add(DefaultLifetime)
	}
	life := exp.Sub(now)
	c.tok, c.have = tok, true
	c.usableUntil = exp.Add(-min(maxSkew, life/10))
	c.refreshAt = exp.Add(-min(c.clk.refreshBefore, life/2))
	if !c.notAfter.IsZero() && c.notAfter.Before(c.usableUntil) {
		// An exchanged token is not used past the token it was exchanged for.
		c.usableUntil = c.notAfter
	}
}

// expired reports whether the cell holds nothing usable and nothing is being
// fetched, so that a bounded cache may drop it.
func (c *cell) expired(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inflight == nil && (!c.have || !now.Before(c.usableUntil)) && !now.Before(c.failedUntil)
}
