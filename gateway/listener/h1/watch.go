package h1

import (
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// defaultWatchAfter is Options.WatchAfter when it is zero.
const defaultWatchAfter = 200 * time.Millisecond

// watchStarts counts the disconnect watchers that started reading (for tests).
var watchStarts atomic.Int64

// Watcher states, under conn.wmu.
const (
	wIdle    uint8 = iota
	wArmed         // the timer is set for the running handler
	wRunning       // the timer's goroutine is reading one byte from the connection
)

// armWatch sets the connection's timer for the handler now running: when it
// fires, a read of one byte from the connection notices a client that went
// away (see watch). The timer is created on first use and reused, so that a
// request pays a timer reset and stop, no goroutine and no allocation. It is
// called on the connection's goroutine when the handler starts without a body
// to read, and from the body reader (under reqBody.mu) when the body ends; the
// connection's reader is idle then. With bytes of a pipelined request already
// buffered there is nothing to watch: the client has sent them.
func (c *conn) armWatch() {
	d := c.o.WatchAfter
	if d < 0 {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wcancel == nil || c.wstate == wRunning || c.br.Buffered() > 0 || c.held {
		return
	}
	c.wstate = wArmed
	c.wwhen = time.Now().Add(d)
	if c.wt == nil {
		c.wt = time.AfterFunc(d, c.watch)
	} else {
		c.wt.Reset(d)
	}
}

// watch runs on the timer's goroutine while the handler is still running with
// the request body read to its end: it reads one byte from the connection
// (not through c.br, whose buffer is empty and which the connection's
// goroutine does not use meanwhile). A byte is the start of a pipelined
// request: it is kept for connReader to return first. The end of the stream or
// an error means the client is gone: the request's context is canceled. A
// timeout means stopWatch ended the read.
func (c *conn) watch() {
	c.wmu.Lock()
	// A late run of a timer stopped too late, or reset since, finds another
	// state or an earlier time; the run that is due comes after.
	if c.wstate != wArmed || time.Now().Before(c.wwhen) {
		c.wmu.Unlock()
		return
	}
	if b := c.wbody; b != nil && !b.done() {
		c.wstate = wIdle // the body end arms it again
		c.wmu.Unlock()
		return
	}
	c.wstate = wRunning
	c.wran = true
	cancel := c.wcancel
	// Deadlines left from the head (idle, read-header) would end the watch
	// early; stopWatch sets its own under wmu, after this.
	c.rwc.SetReadDeadline(time.Time{})
	c.wmu.Unlock()
	watchStarts.Add(1)

	n, err := c.rwc.Read(c.wbuf[:])

	c.wmu.Lock()
	var ne net.Error
	switch {
	case n > 0:
		c.held = true
	case err != nil && !(errors.As(err, &ne) && ne.Timeout()):
		cancel()
	}
	c.wstate = wIdle
	c.wcond.Broadcast()
	c.wmu.Unlock()
}

// startWatch makes the watcher possible for the handler about to run, and arms
// it unless the handler has a body to read first (the body's end arms it).
func (c *conn) startWatch(w *response) {
	if c.o.WatchAfter < 0 {
		return
	}
	c.wmu.Lock()
	c.wcancel, c.wbody = w.cancel, w.body
	c.wmu.Unlock()
	if w.body == nil {
		c.armWatch()
	}
}

// stopWatch runs when the handler has returned (or the connection ends): it
// stops the timer, and ends a watcher's read by a deadline in the past, waiting
// for it. The read deadline the connection's goroutine relies on is then
// unknown: c.rdl is invalidated so that the next read sets it.
func (c *conn) stopWatch() {
	if c.o.WatchAfter < 0 {
		return
	}
	c.wmu.Lock()
	c.wcancel, c.wbody = nil, nil
	switch c.wstate {
	case wArmed:
		c.wt.Stop()
		c.wstate = wIdle
	case wRunning:
		c.rwc.SetReadDeadline(time.Unix(1, 0))
		for c.wstate == wRunning {
			c.wcond.Wait()
		}
	}
	if c.wran {
		c.wran = false
		c.rdl = rdlUnknown
	}
	c.wmu.Unlock()
}

// readConn reads from the connection, returning first a byte the watcher read.
func (c *conn) readConn(p []byte) (int, error) {
	if c.held && len(p) > 0 {
		c.held = false
		p[0] = c.wbuf[0]
		return 1, nil
	}
	return c.rwc.Read(p)
}
