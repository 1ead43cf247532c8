package h1

import (
	"context"
	"io"
	"net/http"
	"sync"
)

// serveRequest runs the handler for one request on the connection's goroutine
// and ends its response. It reports whether the connection carries on.
func (c *conn) serveRequest(req *http.Request) bool {
	ctx, cancel := context.WithCancel(c.ctx)
	r := req.WithContext(ctx)
	r.RemoteAddr = c.remote
	r.TLS = c.tls
	w := &response{
		c: c, s: c.scratch(), req: r, cancel: cancel, header: make(http.Header, 4), contentLength: -1,
		is11:       r.ProtoAtLeast(1, 1),
		isHEAD:     r.Method == http.MethodHead,
		wantsClose: r.Close, // http.ReadRequest: Connection: close, or HTTP/1.0 without keep-alive
		wants10KA:  r.ProtoMajor == 1 && r.ProtoMinor == 0 && hasToken(r.Header["Connection"], "keep-alive"),
	}
	if r.Body != nil && r.Body != http.NoBody {
		w.body = &reqBody{src: r.Body, w: w, orig: req, req: r}
		r.Body = w.body
	}
	c.cur = w

	h := c.h
	switch e := r.Header.Get("Expect"); {
	case hasToken([]string{e}, "100-continue"):
		// RFC 9110 §10.1.1: the client waits for 100 (Continue) before it
		// sends the body; we send it when the handler first reads the body.
		// An HTTP/1.0 client cannot be sent a 1xx (§15.2).
		if w.is11 && r.ContentLength != 0 {
			w.expectCont = true
			w.canContinue.Store(true)
		}
	case e != "":
		// §10.1.1: 417 for an expectation we cannot meet, and close, as net/http.
		c.report(KindExpectation, e)
		h = expectationFailed
	}
	if r.Method == http.MethodOptions && r.RequestURI == "*" {
		h = optionsStar // server-wide OPTIONS (RFC 9110 §9.3.7), answered as by net/http
	}

	c.startWatch(w)
	h.ServeHTTP(w, r)
	c.stopWatch()
	cancel()
	if c.hijacked {
		c.cur = nil
		return false
	}
	w.finish()

	keep, linger := w.reusable(), w.lingerAfter
	if b := w.body; b != nil {
		keep, linger = b.end(keep, linger)
	}
	c.cur = nil
	if !keep && linger {
		c.linger()
	}
	return keep
}

var (
	expectationFailed = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusExpectationFailed)
	})
	optionsStar = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "0")
	})
)

// reqBody is the Request.Body the handler reads. It sends the automatic 100
// Continue, records whether the body was read to its end (so that the
// connection's next bytes are the next request), and stops reads after the
// handler returned. http.ReadRequest's own body reader does the framing.
type reqBody struct {
	mu     sync.Mutex
	src    io.ReadCloser
	w      *response
	orig   *http.Request // as read: http.ReadRequest's reader sets its Trailer
	req    *http.Request // the handler's copy (with the context)
	n      int64
	sawEOF bool
	closed bool
	err    error
}

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.w.canContinue.Load() {
		b.w.writeContinue()
	}
	n, err := b.src.Read(p)
	b.account(n, err)
	return n, err
}

func (b *reqBody) account(n int, err error) {
	b.n += int64(n)
	switch {
	case err == io.EOF:
		if !b.sawEOF {
			b.w.c.armWatch() // the handler may now wait on something else
		}
		b.sawEOF = true
		// A chunked body's trailer fields arrive with its end, into the
		// request that http.ReadRequest returned; the handler has a copy.
		if b.req.Trailer == nil && b.orig.Trailer != nil {
			b.req.Trailer = b.orig.Trailer
		}
	case err != nil && b.err == nil:
		b.err = err
	}
}

// Close marks the body closed; the server reads what is left (bounded) after
// the handler returns, as net/http does.
func (b *reqBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// done reports whether the body was read to its end; false while another
// goroutine of the handler is reading it.
func (b *reqBody) done() bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	return b.sawEOF
}

type drainResult uint8

const (
	drainDone   drainResult = iota // the body was read to its end
	drainTooBig                    // more than maxDrain left
	drainFailed                    // a read error: the framing is lost
	drainBusy                      // a goroutine of the handler is reading it
)

// drain is drainLocked unless a goroutine of the handler is in a Read: that
// read may wait on the client for ever, and the response must not wait on it
// (net/http would); the connection then closes after the response.
func (b *reqBody) drain() drainResult {
	if !b.mu.TryLock() {
		return drainBusy
	}
	defer b.mu.Unlock()
	return b.drainLocked()
}

// drainLocked reads the rest of the body up to maxDrain bytes, as net/http does
// before answering (RFC 9112 §9.3: the connection can only carry on once the
// message is read to its end).
func (b *reqBody) drainLocked() drainResult {
	switch {
	case b.sawEOF:
		return drainDone
	case b.err != nil:
		return drainFailed
	case b.req.ContentLength > 0 && b.req.ContentLength-b.n >= maxDrain:
		return drainTooBig // known without reading
	}
	c := b.w.c
	c.draining = true
	n, err := io.CopyN(io.Discard, b.src, maxDrain+1)
	c.draining = false
	if err == nil {
		b.n += n
		return drainTooBig
	}
	b.account(int(n), err)
	if b.sawEOF {
		return drainDone
	}
	return drainFailed
}

// end runs after the response: with keep it reads a rest the handler left
// (full duplex) and says whether the connection carries on; closing with a
// body still arriving, it asks for a lingering close. A goroutine of the
// handler still reading the body (which net/http forbids) is stopped by
// closing the connection.
func (b *reqBody) end(keep, linger bool) (bool, bool) {
	if !b.mu.TryLock() {
		b.w.c.rwc.Close()
		b.mu.Lock()
		keep, linger = false, false
	}
	defer b.mu.Unlock()
	b.closed = true
	if b.sawEOF {
		return keep, linger
	}
	if keep {
		switch b.drainLocked() {
		case drainDone:
			return true, false
		case drainTooBig:
			return false, true
		default:
			return false, false
		}
	}
	w := b.w
	w.contMu.Lock()
	unsent := w.expectCont && !w.continueSent
	w.contMu.Unlock()
	return false, linger || (!unsent && b.err == nil)
}

// shut stops reads after the connection ended.
func (b *reqBody) shut() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}
