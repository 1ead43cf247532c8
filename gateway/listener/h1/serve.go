package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure ServeConn. The zero value is valid: a 1 MiB head limit
// (http.DefaultMaxHeaderBytes), no header count limit and no timeouts, as an
// http.Server with zero fields.
type Options struct {
	// MaxHeaderBytes bounds the request line and header section, counted
	// exactly (net/http allows 4 KiB of slack on top). Above it: 431 and close.
	MaxHeaderBytes int
	// MaxHeaders bounds the number of header field lines (Host and
	// Transfer-Encoding included; obs-fold continuations are part of their
	// line). Above it: 431 and close. Zero: no limit.
	MaxHeaders int
	// ReadHeaderTimeout bounds the reading of a request head: for the first
	// request from the start of ServeConn, for later ones from the first byte.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection.
	IdleTimeout time.Duration
	// BaseContext is the parent of every request context. Nil: Background.
	BaseContext context.Context
	// ConnContext, like http.Server.ConnContext, may derive the connection's
	// context (the parent of its request contexts) from BaseContext.
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	// OnError, if not nil, is called on the connection's goroutine for each
	// request refused before the handler (see the Kind constants), with a
	// detail for logs. It should not block.
	OnError func(kind, detail string)
	// Logger gets handler panics and handler misuse. Nil discards.
	Logger *slog.Logger
	// OnHijack, if not nil, is called with the connection given to ServeConn
	// when a handler hijacks it (http.Hijacker), on the handler's goroutine,
	// before Hijack returns. ServeConn returns without closing a hijacked
	// connection once the handler returns; tracking it until it closes is the
	// caller's.
	OnHijack func(c net.Conn)
	// WatchAfter is how long a handler may run, once the request body has
	// been read to its end (or there is none), before the connection is
	// watched for a client that goes away: a read of one byte that cancels
	// the request's context at the end of the stream. Faster requests start
	// no watcher. Zero: 200 ms. Negative: no watcher; a client that goes
	// away is then noticed at the next write.
	WatchAfter time.Duration
}

// Kinds of refused requests reported through Options.OnError.
const (
	KindBadRequest        = "bad_request"                   // 400: malformed request line, header, URI, Host, framing
	KindHeaderTooLarge    = "header_too_large"              // 431: head above MaxHeaderBytes
	KindTooManyHeaders    = "too_many_headers"              // 431: more field lines than MaxHeaders
	KindUnsupportedTE     = "unsupported_transfer_encoding" // 501: a transfer coding other than chunked
	KindUnsupportedVer    = "unsupported_version"           // 505: not HTTP/1.x
	KindExpectation       = "expectation_failed"            // 417: an Expect other than 100-continue
	KindReadHeaderTimeout = "read_header_timeout"           // a head started but not finished in time (slowloris)
)

const (
	bufSize       = 4 << 10   // read buffer; body bytes held back to compute Content-Length
	writeBufSize  = 8 << 10   // output buffer: a head and bufSize of body go out in one write
	maxDrain      = 256 << 10 // unread request body the server reads to keep a connection (as net/http)
	lingerTimeout = 500 * time.Millisecond
	maxLinger     = 256 << 10
	maxDetail     = 256 // OnError detail
)

// Which read deadline the connection has: the next one is set only when it differs.
const (
	rdlNone uint8 = iota
	rdlIdle
	rdlHeader
	rdlDrain
	rdlUser    // set by the handler through http.ResponseController
	rdlUnknown // set by the disconnect watcher: the next read sets its own
)

var errHeadTooLarge = errors.New("h1: request head too large")

// ServeConn serves HTTP/1.x requests read from c with h until the connection
// ends (the client closes it, a timeout, an error, a response that closes it),
// then closes c. Requests are served one at a time, in order, on the calling
// goroutine. o may be nil. A handler that hijacks c (see response.Hijack) ends
// the loop: ServeConn returns when that handler does, and leaves c open.
func ServeConn(c net.Conn, h http.Handler, o *Options) {
	sc := &conn{rwc: c, h: h}
	if o != nil {
		sc.o = *o
	}
	if sc.o.WatchAfter == 0 {
		sc.o.WatchAfter = defaultWatchAfter
	}
	sc.wcond.L = &sc.wmu
	if sc.o.MaxHeaderBytes <= 0 {
		sc.o.MaxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	sc.log = sc.o.Logger
	if sc.log == nil {
		sc.log = slog.New(slog.DiscardHandler)
	}
	defer sc.end()
	sc.serve()
}

// conn is the state of one connection. Everything is used by the connection's
// goroutine only, except what a handler's goroutines reach through the request
// body (serialised by reqBody.mu) and the response (see response).
type conn struct {
	rwc    net.Conn
	h      http.Handler
	o      Options
	log    *slog.Logger
	ctx    context.Context
	remote string
	tls    *tls.ConnectionState

	br *bufio.Reader
	s  *scratch // per-request buffers; nil while waiting for a request

	// Reading a head: the byte limit and the copy of the raw head (s.head).
	head     bool
	remain   int64
	hitLimit bool
	headSeen bool // a byte of the current head has arrived
	hdrArmed bool // the read-header deadline of the current head is set
	rdl      uint8
	draining bool // reading a request body the handler left, under drainTimeout

	lastMethod string
	cur        *response
	werr       error // first write error: the connection is dead
	panicked   bool
	hijacked   bool // a handler took the connection over (hijack.go)

	// The disconnect watcher (watch.go). wmu guards the fields below but
	// held and wbuf, which the watcher sets before it leaves wRunning and
	// the connection's goroutine uses after stopWatch.
	wmu     sync.Mutex
	wcond   sync.Cond
	wt      *time.Timer
	wstate  uint8
	wwhen   time.Time
	wcancel context.CancelFunc // the running handler's; nil between handlers
	wbody   *reqBody
	wran    bool // a watcher read the connection (and changed its read deadline)
	wbuf    [1]byte
	held    bool // wbuf holds a byte read by the watcher, not yet returned
}

// scratch holds the buffers a request needs from its first byte to the end of
// its response. They go back to a pool in between, so that an idle keep-alive
// connection holds only its read buffer.
type scratch struct {
	head []byte   // raw request head as read (to count fields and see Host)
	pend []byte   // body bytes not framed yet; cap bufSize
	snap []byte   // status line and handler header fields, from WriteHeader
	keys []string // header keys, sorted
	bw   *bufio.Writer
}

var (
	scratchPool = sync.Pool{New: func() any {
		return &scratch{pend: make([]byte, 0, bufSize), bw: bufio.NewWriterSize(nil, writeBufSize)}
	}}
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
)

func (c *conn) scratch() *scratch {
	if c.s == nil {
		c.s = scratchPool.Get().(*scratch)
		c.s.bw.Reset((*connWriter)(c))
	}
	return c.s
}

func (c *conn) releaseScratch() {
	s := c.s
	if s == nil {
		return
	}
	c.s = nil
	if cap(s.head) > 64<<10 {
		s.head = nil
	}
	if cap(s.snap) > 64<<10 {
		s.snap = nil
	}
	if cap(s.keys) > 256 {
		s.keys = nil
	}
	s.head, s.pend, s.snap, s.keys = s.head[:0], s.pend[:0], s.snap[:0], s.keys[:0]
	s.bw.Reset(nil)
	scratchPool.Put(s)
}

// connWriter is the writer under the output buffer: it notes the first error,
// which means the client is gone, and cancels the request's context then, the
// only way a handler learns of it while it is not reading the body.
type connWriter conn

func (cw *connWriter) Write(p []byte) (int, error) {
	c := (*conn)(cw)
	n, err := c.rwc.Write(p)
	if err != nil && c.werr == nil {
		c.werr = err
		if w := c.cur; w != nil {
			w.cancel()
		}
	}
	return n, err
}

func (c *conn) serve() {
	if ra := c.rwc.RemoteAddr(); ra != nil {
		c.remote = ra.String()
	}
	ctx := c.o.BaseContext
	if ctx == nil {
		ctx = context.Background()
	}
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.rwc.LocalAddr())
	if c.o.ConnContext != nil {
		if ctx = c.o.ConnContext(ctx, c.rwc); ctx == nil {
			panic("h1: ConnContext returned nil")
		}
	}
	c.ctx = ctx
	if !c.tlsState() {
		return
	}

	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset((*connReader)(c))
	// The first request's head must arrive within ReadHeaderTimeout of the
	// connection's start, as with net/http: a client that connects and sends
	// nothing is closed then.
	c.hdrArmed = true
	if d := c.o.ReadHeaderTimeout; d > 0 {
		c.rwc.SetReadDeadline(time.Now().Add(d))
		c.rdl = rdlHeader
	}
	for {
		req, err := c.readRequest()
		if err != nil {
			c.refuse(err)
			return
		}
		if !c.serveRequest(req) {
			return
		}
		c.releaseScratch()
		c.nextHead()
	}
}

// tlsState fills c.tls for a *tls.Conn (completing its handshake if the caller
// has not) or for a conn with a ConnectionState method, as net/http does.
func (c *conn) tlsState() bool {
	switch tc := c.rwc.(type) {
	case *tls.Conn:
		if !tc.ConnectionState().HandshakeComplete {
			if d := c.o.ReadHeaderTimeout; d > 0 {
				tc.SetDeadline(time.Now().Add(d))
			}
			if err := tc.HandshakeContext(c.ctx); err != nil {
				c.log.Debug("h1: TLS handshake failed", "remote", c.remote, "error", err)
				return false
			}
			tc.SetDeadline(time.Time{})
		}
		st := tc.ConnectionState()
		c.tls = &st
	case interface{ ConnectionState() tls.ConnectionState }:
		st := tc.ConnectionState()
		c.tls = &st
	}
	return true
}

// nextHead prepares the wait for the next request on a kept-alive connection.
// Only one deadline is set per request in the common case: the idle deadline
// now, or nothing when the next head is already buffered (pipelining). The
// read-header deadline is set by read when a head needs a second read.
func (c *conn) nextHead() {
	c.hdrArmed = false
	c.headSeen = c.br.Buffered() > 0 || c.held
	if c.headSeen {
		return
	}
	if d := c.o.IdleTimeout; d > 0 {
		c.rwc.SetReadDeadline(time.Now().Add(d))
		c.rdl = rdlIdle
	} else if c.rdl != rdlNone {
		c.rwc.SetReadDeadline(time.Time{})
		c.rdl = rdlNone
	}
}

// end runs when serve returns or panics: it reports a handler panic as net/http
// does, ends the request in flight and closes the connection.
func (c *conn) end() {
	if v := recover(); v != nil {
		c.panicked = true
		if v != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.log.Error("h1: panic serving request", "remote", c.remote, "panic", fmt.Sprint(v), "stack", string(buf))
		}
	}
	// Close first: a handler goroutine blocked reading the body returns. A
	// hijacked connection is the handler's.
	if !c.hijacked {
		c.rwc.Close()
	}
	c.stopWatch()
	if w := c.cur; w != nil {
		w.cancel()
		w.disableContinue()
		if w.body != nil {
			w.body.shut()
		}
		w.finished.Store(true)
		w.s = nil
		c.cur = nil
	}
	if c.panicked {
		// A handler's goroutine may still hold the response: keep its buffers
		// out of the pools.
		c.s, c.br = nil, nil
		return
	}
	c.releaseScratch()
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
}

// refuse answers a request that failed before its handler as net/http's server
// does (conn.serve): 431 for a head over the limit, 501 for an unknown transfer
// coding, nothing for a connection that ended or timed out, the status of a
// statusError, else 400. The connection is closed after.
func (c *conn) refuse(err error) {
	var se statusError
	switch {
	case err == errHeadTooLarge:
		// RFC 6585 §5. The client may still be sending its head: half-close
		// and read on a while, so that our answer is not lost to a reset.
		c.report(KindHeaderTooLarge, "request head over "+strconv.Itoa(c.o.MaxHeaderBytes)+" bytes")
		c.writeError(http.StatusRequestHeaderFieldsTooLarge, "")
		c.linger()
	case isUnsupportedTE(err):
		// RFC 9112 §6.1: a server that receives a transfer coding it does not
		// understand SHOULD respond 501. The coding is not echoed back.
		c.report(KindUnsupportedTE, err.Error())
		c.writeError(http.StatusNotImplemented, "unsupported transfer encoding")
	case isCommonNetReadError(err):
		var ne net.Error
		if c.headSeen && errors.As(err, &ne) && ne.Timeout() {
			c.report(KindReadHeaderTimeout, "request head not complete within "+c.o.ReadHeaderTimeout.String())
		}
	case errors.As(err, &se):
		c.report(se.kind, se.text)
		c.writeError(se.code, se.text)
		if se.linger {
			c.linger()
		}
	default:
		c.report(KindBadRequest, err.Error())
		c.writeError(http.StatusBadRequest, "")
	}
}

func (c *conn) report(kind, detail string) {
	if c.o.OnError == nil {
		return
	}
	if len(detail) > maxDetail {
		detail = detail[:maxDetail] + "..."
	}
	c.o.OnError(kind, detail)
}

// writeError writes a complete response that closes the connection. Unlike
// net/http it has a Content-Length and a Date (RFC 9110 §6.6.1).
func (c *conn) writeError(code int, text string) {
	body := strconv.Itoa(code) + " " + http.StatusText(code)
	if text != "" {
		body += ": " + text
	}
	s := c.scratch()
	b := appendStatusLine(s.snap[:0], true, code)
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nDate: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	s.snap = b
	s.bw.Write(b)
	s.bw.Flush()
}

// linger half-closes the connection and reads what the client still sends
// for a while before the close, so that unread input does not make the kernel
// reset the connection and discard the response we just sent (RFC 9112 §9.6).
// net/http sleeps for the same 500 ms; reading lets a client that closes
// promptly free the connection sooner.
func (c *conn) linger() {
	if c.werr != nil {
		return
	}
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.rwc.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.CopyN(io.Discard, c.rwc, maxLinger)
}

// statusError is a refusal with its status, as net/http's statusError.
type statusError struct {
	code   int
	kind   string
	text   string
	linger bool
}

func (e statusError) Error() string { return http.StatusText(e.code) + ": " + e.text }

func badRequest(text string) error {
	return statusError{code: http.StatusBadRequest, kind: KindBadRequest, text: text}
}

// isUnsupportedTE recognises http.ReadRequest's unsupportedTEError (unexported)
// by its message; TestRefusals pins this against the standard library.
func isUnsupportedTE(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unsupported transfer encoding") || strings.HasPrefix(s, "too many transfer encodings")
}

// isCommonNetReadError: the client went away or timed out while we read a
// head. net/http answers nothing then, and neither do we.
func isCommonNetReadError(err error) bool {
	if err == io.EOF {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}
