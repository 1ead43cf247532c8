package push

import (
	"sync"
	"time"
	"unicode/utf8"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
)

// update is one scoped config offered to a proxy, from catalog generation gen.
type update struct {
	gen uint64
	rendered
}

// proxyConn is one proxy's open stream. Offers land in a one-slot mailbox (the
// latest wins) and the stream's own goroutine sends them, so a slow proxy delays
// nobody but itself.
type proxyConn struct {
	id     identity
	node   string
	connID string // unique per stream across replicas; owns the status record
	notify chan struct{}
	kicked chan struct{} // closed when a newer stream from the same node takes over

	mu         sync.Mutex
	offeredGen uint64
	sent       string    // the last version sent, or the one the proxy said it runs
	want       string    // the version of the latest valid offer (sent or pending)
	sentAt     time.Time // when sent went out; zero once answered
	pending    *update
	rec        record
}

func newProxyConn(id identity, node, connID string, hello *cpv1.Hello, now time.Time) *proxyConn {
	return &proxyConn{
		id:     id,
		node:   node,
		connID: connID,
		notify: make(chan struct{}, 1),
		sent:   hello.GetRunningVersion(),
		want:   hello.GetRunningVersion(),
		rec: record{
			Node: node, Role: id.role, Namespace: id.namespace, Name: id.name,
			Connected: true, Running: hello.GetRunningVersion(), Build: clip(hello.GetBuild(), 200),
			LastSeen: now.Unix(), Conn: connID,
		},
	}
}

// offer puts u in the mailbox unless a newer offer was already made or the proxy
// already has u's version. An invalid scope is recorded and sends nothing: the
// proxy keeps what it runs. It reports whether the status record changed (a scope
// error appeared, changed or cleared).
func (c *proxyConn) offer(u *update) (recordChanged bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if u.gen < c.offeredGen {
		return false
	}
	c.offeredGen = u.gen
	if u.err != nil {
		msg := clip(u.err.Error(), maxErrorBytes)
		recordChanged = c.rec.ScopeError != msg
		c.rec.ScopeError = msg
		c.pending = nil
		c.want = c.sent
		return recordChanged
	}
	recordChanged = c.rec.ScopeError != ""
	c.rec.ScopeError = ""
	if u.version == c.want {
		return recordChanged
	}
	c.want = u.version
	c.pending = u
	select {
	case c.notify <- struct{}{}:
	default: // already signalled; the sender will find the newest offer
	}
	return recordChanged
}

// take empties the mailbox and marks its update as sent.
func (c *proxyConn) take(now time.Time) *update {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.pending
	c.pending = nil
	if u != nil {
		c.sent = u.version
		c.sentAt = now
		c.rec.Sent = u.version
	}
	return u
}

// ack records an ACK or NACK. It returns the time from sending the acknowledged
// version to its answer, when that version is the last one sent and was not
// answered before.
func (c *proxyConn) ack(a *cpv1.Ack, now time.Time) (latency time.Duration, timed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rec.LastSeen = now.Unix()
	if a.GetAccepted() {
		c.rec.Running = a.GetVersion()
	} else {
		c.rec.Refused = a.GetVersion()
		c.rec.RefusedError = clip(a.GetError(), maxErrorBytes)
	}
	if a.GetVersion() == c.sent && !c.sentAt.IsZero() {
		latency, timed = now.Sub(c.sentAt), true
		c.sentAt = time.Time{}
	}
	return latency, timed
}

// record returns the proxy's status record as of now.
func (c *proxyConn) record(now time.Time) record {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rec
	// The stream is open (gRPC keepalive checks the peer), so the proxy is seen now.
	r.LastSeen = now.Unix()
	return r
}

// maxErrorBytes bounds the error texts kept in status records; a proxy's NACK text
// is the proxy's to choose and must not grow the store without bound.
const maxErrorBytes = 4096

// clip shortens s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
