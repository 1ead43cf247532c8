package h1

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// errFinished is returned by a ResponseWriter used after its handler returned.
var errFinished = errors.New("h1: response used after the handler returned")

// response is the http.ResponseWriter of one request. Its methods are for the
// handler's goroutine, as net/http's; only the automatic 100 Continue may be
// written from another goroutine reading the body (see writeContinue).
//
// The body flows: Write -> s.pend (up to bufSize, so that a small response gets
// a Content-Length and a sniffed Content-Type) -> commit (status line and
// header) -> s.bw (8 KiB) -> the connection. A response that fits leaves in one
// write when the handler returns.
type response struct {
	c        *conn
	s        *scratch    // nil once finished
	finished atomic.Bool // the handler returned or hijacked: a late call must not touch s
	hijacked bool        // set before finished
	req      *http.Request
	body     *reqBody // nil when the request has no body
	cancel   context.CancelFunc
	header   http.Header

	status        int
	written       int64 // body bytes the handler wrote (HEAD included)
	contentLength int64 // from the handler's Content-Length, or computed; -1 unknown

	wroteHeader bool // a final status was chosen
	committed   bool // the head is in s.bw
	handlerDone bool
	chunking    bool
	closeAfter  bool // close the connection after this response
	lingerAfter bool // ... reading on briefly first: the client may still be sending the body
	fullDuplex  bool
	is11        bool
	isHEAD      bool
	wants10KA   bool // HTTP/1.0 with Connection: keep-alive
	wantsClose  bool // the request has Connection: close, or is HTTP/1.0 without keep-alive
	expectCont  bool // the body is read behind an automatic 100 Continue

	// From the header at WriteHeader (the rest of it is in s.snap).
	hdrCL          bool
	te             []string
	connection     []string
	haveCT         bool
	haveDate       bool
	haveCE         bool
	trailers       []string // declared in Trailer, canonical
	prefixTrailers bool     // keys with http.TrailerPrefix

	contMu       sync.Mutex
	canContinue  atomic.Bool
	continueSent bool // under contMu
	userWDL      bool // the handler set a write deadline
}

// Header implements http.ResponseWriter. Changes after WriteHeader have no
// effect except for trailers, as with net/http; the header is snapshotted as
// bytes at WriteHeader rather than cloned.
func (w *response) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter. 1xx statuses other than 101 are
// sent at once (e.g. 103 Early Hints, RFC 8297) and may be repeated.
func (w *response) WriteHeader(code int) {
	if w.finished.Load() {
		if w.hijacked {
			w.misuse("WriteHeader on a hijacked connection", "status", code)
		}
		return
	}
	if w.wroteHeader {
		w.misuse("superfluous WriteHeader call", "status", code)
		return
	}
	if code < 100 || code > 999 {
		// net/http panics too: a status must be three digits (RFC 9110 §15).
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 101 || code > 199 {
		w.disableContinue() // a final status or an explicit 100 replaces the automatic one
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	if code == http.StatusSwitchingProtocols {
		// The handler is expected to Hijack next (the 101 goes out then). If
		// it returns instead, what the client sends next is not HTTP/1: the
		// connection ends after the 101 (finish).
		w.closeAfter = true
	}
	w.snapshot()
}

func (w *response) misuse(msg string, args ...any) {
	if _, file, line, ok := runtime.Caller(2); ok {
		args = append(args, "caller", file+":"+strconv.Itoa(line))
	}
	w.c.log.Warn("h1: "+msg, args...)
}

// writeInformational sends a 1xx response with the header set so far (net/http
// does the same; RFC 8297 keeps those fields for the final response too). An
// HTTP/1.0 client gets none: RFC 9110 §15.2 forbids it.
func (w *response) writeInformational(code int) {
	if !w.is11 {
		return
	}
	if w.canContinue.Load() {
		w.contMu.Lock()
		defer w.contMu.Unlock()
	}
	s := w.s
	b := appendStatusLine(s.snap[:0], true, code)
	b = w.appendHeader(b, true)
	b = append(b, "\r\n"...)
	s.snap = b[:0]
	s.bw.Write(b)
	s.bw.Flush()
}

// snapshot records the header at WriteHeader: the fields the handler owns go
// into s.snap as wire bytes after the status line; those whose final form
// depends on the body (framing, Connection) are kept aside for commit.
func (w *response) snapshot() {
	h := w.header
	if v, ok := h["Content-Length"]; ok && len(v) > 0 {
		n, err := strconv.ParseInt(strings.TrimSpace(v[0]), 10, 64)
		if err == nil && n >= 0 {
			w.contentLength, w.hdrCL = n, true
		} else {
			w.misuse("invalid Content-Length ignored", "value", v[0])
		}
	}
	if v := h["Transfer-Encoding"]; len(v) > 0 && v[0] != "" {
		w.te = slices.Clone(v)
	}
	if v, ok := h["Connection"]; ok {
		w.connection = slices.Clone(v)
	}
	_, w.haveCT = h["Content-Type"]
	_, w.haveDate = h["Date"]
	w.haveCE = h.Get("Content-Encoding") != ""
	for _, v := range h["Trailer"] {
		for f := range strings.SplitSeq(v, ",") {
			if k := http.CanonicalHeaderKey(strings.TrimSpace(f)); k != "" && validTrailer(k) {
				w.trailers = append(w.trailers, k)
			}
		}
	}
	s := w.s
	b := appendStatusLine(s.snap[:0], w.is11, w.status)
	s.snap = w.appendHeader(b, false)
}

// commit writes the head of the response to s.bw, choosing the framing (RFC
// 9112 §6.3) as net/http's chunkWriter.writeHeader does. p is the start of the
// body (up to bufSize): it is sniffed for a Content-Type and, when the handler
// has returned, gives the Content-Length.
func (w *response) commit(p []byte) {
	w.committed = true
	bodyOK := bodyAllowed(w.status)
	te := ""
	if len(w.te) > 0 {
		te = w.te[0]
	}
	if w.handlerDone && !w.prefixTrailers && len(w.trailers) == 0 && te == "" && bodyOK && !w.hdrCL &&
		(!w.isHEAD || len(p) > 0) {
		// The whole body is known: send its length, which also lets an
		// HTTP/1.0 keep-alive client keep the connection. For HEAD a
		// handler that wrote nothing may just have skipped the body, so no
		// length is claimed then.
		w.contentLength = int64(len(p))
	}
	hasCL := w.contentLength != -1
	if hasCL && te != "" && te != "identity" {
		w.misuse("Content-Length with Transfer-Encoding: Content-Length dropped", "te", te)
		w.contentLength, hasCL = -1, false
	}

	extraConn := ""
	switch {
	case w.wants10KA && (w.isHEAD || hasCL || !bodyOK):
		// RFC 9112 §9.3: an HTTP/1.0 connection persists only if both ends
		// say keep-alive, and only a delimited body allows it.
		if w.connection == nil {
			extraConn = "keep-alive"
		}
	case !w.is11 || w.wantsClose:
		w.closeAfter = true
	}
	if hasToken(w.connection, "close") {
		w.closeAfter = true
	}
	if w.req.Method == "CONNECT" {
		w.closeAfter = true // what follows a CONNECT may be tunnel data, not HTTP
	}
	w.settleBody(&extraConn)

	keepTE := false
	switch {
	case w.isHEAD || !bodyOK:
	case hasCL:
	case w.is11 && te == "identity":
		// Obsolete (RFC 9112 §6.1 lists no identity coding), kept as in
		// net/http: an unframed body delimited by the close.
		w.closeAfter = true
	case w.is11:
		w.chunking = true
		keepTE = te != "" && te != "chunked"
	default:
		w.closeAfter = true // HTTP/1.0 without a length: the close ends the body
	}

	s := w.s
	b := s.snap
	if w.closeAfter && !hasToken(w.connection, "close") && w.status != http.StatusSwitchingProtocols {
		w.connection = nil
		if w.is11 || extraConn == "close" {
			extraConn = "close"
		} else {
			extraConn = ""
		}
	}
	b = appendField(b, "Connection", w.connection)
	if keepTE {
		b = appendField(b, "Transfer-Encoding", w.te)
	}
	if !w.haveDate {
		b = append(b, "Date: "...)
		b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, "\r\n"...)
	}
	if hasCL && bodyOK {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, w.contentLength, 10)
		b = append(b, "\r\n"...)
	}
	if bodyOK && !w.haveCT && !w.haveCE && te == "" && len(p) > 0 {
		b = append(b, "Content-Type: "...)
		b = append(b, http.DetectContentType(p)...)
		b = append(b, "\r\n"...)
	}
	if extraConn != "" {
		b = append(b, "Connection: "...)
		b = append(b, extraConn...)
		b = append(b, "\r\n"...)
	}
	if w.chunking {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = append(b, "\r\n"...)
	s.snap = b
	s.bw.Write(b)
}

// settleBody decides, before the head goes out, what becomes of a request body
// the handler did not finish: as net/http, the rest is read now (up to
// maxDrain) so that a client that sends its whole request before reading the
// response cannot deadlock, unless the connection closes anyway or the handler
// asked for full duplex. A larger rest closes the connection, announced.
func (w *response) settleBody(extraConn *string) {
	b := w.body
	if b == nil {
		return
	}
	if w.expectCont {
		// The client waits for 100 Continue before sending the body; if
		// we did not ask for it (or the handler stopped reading), the next
		// bytes are unknown: close (net/http does the same).
		if !b.done() {
			w.closeAfter = true
		}
		return
	}
	if w.closeAfter || w.fullDuplex {
		return
	}
	switch b.drain() {
	case drainDone:
	case drainTooBig:
		w.closeAfter, w.lingerAfter = true, true
		w.connection = nil
		*extraConn = "close"
	default:
		w.closeAfter = true
	}
}

func bodyAllowed(status int) bool {
	// RFC 9110 §6.4.1: 1xx, 204 and 304 responses have no content.
	return !(status >= 100 && status <= 199 || status == 204 || status == 304)
}

// Write implements http.ResponseWriter.
func (w *response) Write(p []byte) (int, error) { return w.write(p, "", len(p)) }

// WriteString implements io.StringWriter, so io.WriteString does not copy.
func (w *response) WriteString(s string) (int, error) { return w.write(nil, s, len(s)) }

func (w *response) write(p []byte, str string, n int) (int, error) {
	if w.finished.Load() {
		return 0, w.doneErr()
	}
	if w.canContinue.Load() {
		w.disableContinue()
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if n == 0 {
		return 0, nil
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(n)
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	if err := w.c.werr; err != nil {
		return 0, err
	}
	s := w.s
	if !w.committed {
		if len(s.pend)+n <= cap(s.pend) {
			s.pend = appendData(s.pend, p, str)
			return n, nil
		}
		// The buffer is full: fill it up, commit with it as the start of
		// the body, and go on streaming.
		k := cap(s.pend) - len(s.pend)
		if p != nil {
			s.pend, p = append(s.pend, p[:k]...), p[k:]
		} else {
			s.pend, str = append(s.pend, str[:k]...), str[k:]
		}
		w.commit(s.pend)
		w.emit(s.pend, "")
		s.pend = s.pend[:0]
	}
	w.bodyOut(p, str)
	if err := w.c.werr; err != nil {
		return 0, err
	}
	return n, nil
}

func appendData(b, p []byte, s string) []byte {
	if p != nil {
		return append(b, p...)
	}
	return append(b, s...)
}

// bodyOut writes body bytes after the commit. Chunks are coalesced in s.pend so
// that many small writes do not make many small chunks.
func (w *response) bodyOut(p []byte, str string) {
	if !w.chunking {
		w.emit(p, str)
		return
	}
	s := w.s
	n := len(p) + len(str)
	if len(s.pend)+n <= cap(s.pend) {
		s.pend = appendData(s.pend, p, str)
		return
	}
	if len(s.pend) > 0 {
		w.emit(s.pend, "")
		s.pend = s.pend[:0]
	}
	if n >= cap(s.pend) {
		w.emit(p, str)
	} else {
		s.pend = appendData(s.pend, p, str)
	}
}

// emit frames body bytes onto s.bw: a chunk (RFC 9112 §7.1), the bytes as they
// are, or nothing (HEAD, and statuses without content).
func (w *response) emit(p []byte, str string) {
	n := len(p) + len(str)
	if n == 0 || w.isHEAD || !bodyAllowed(w.status) {
		return
	}
	bw := w.s.bw
	if w.chunking {
		var hex [16]byte
		bw.Write(strconv.AppendInt(hex[:0], int64(n), 16))
		bw.WriteString("\r\n")
	}
	if p != nil {
		bw.Write(p)
	} else {
		bw.WriteString(str)
	}
	if w.chunking {
		bw.WriteString("\r\n")
	}
}

// Flush implements http.Flusher.
func (w *response) Flush() { w.FlushError() }

// FlushError sends what was written so far; http.ResponseController.Flush
// calls it. The first flush commits the head: the body is then chunked (or,
// for HTTP/1.0, delimited by the close) unless the handler set Content-Length.
func (w *response) FlushError() error {
	if w.finished.Load() {
		return w.doneErr()
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.flushPending()
	if err := w.s.bw.Flush(); err != nil {
		return err
	}
	return w.c.werr
}

func (w *response) flushPending() {
	s := w.s
	if !w.committed {
		w.commit(s.pend)
	}
	w.emit(s.pend, "")
	s.pend = s.pend[:0]
}

// SetReadDeadline is for http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error {
	if w.finished.Load() {
		return w.doneErr()
	}
	w.c.rdl = rdlUser
	return w.c.rwc.SetReadDeadline(t)
}

// SetWriteDeadline is for http.ResponseController.
func (w *response) SetWriteDeadline(t time.Time) error {
	if w.finished.Load() {
		return w.doneErr()
	}
	w.userWDL = true
	return w.c.rwc.SetWriteDeadline(t)
}

// EnableFullDuplex is for http.ResponseController: the handler may go on
// reading the request body after the response has started.
func (w *response) EnableFullDuplex() error {
	w.fullDuplex = true
	return nil
}

// ReadFrom lets io.Copy(w, src) use a pooled buffer instead of allocating one
// per call (net/http's response has the same method).
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	return io.CopyBuffer(writerOnly{w}, src, *bp)
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writerOnly hides ReadFrom from io.CopyBuffer.
type writerOnly struct{ io.Writer }

// finish ends the response after the handler returned: the head if it is not
// out yet, the buffered body, the last chunk and trailers, one flush.
func (w *response) finish() {
	w.handlerDone = true
	if w.status == http.StatusSwitchingProtocols {
		w.c.log.Warn("h1: 101 Switching Protocols written without a Hijack; closing the connection", "remote", w.c.remote)
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.flushPending()
	s := w.s
	if w.chunking {
		s.bw.WriteString("0\r\n")
		if t := w.finalTrailers(); t != nil {
			t.Write(s.bw) // sorted, names checked and values cleaned as for headers
		}
		s.bw.WriteString("\r\n")
	}
	// Finished before the last flush: once the client can see the end of the
	// response, a handler that leaked w (and a test standing in for one) must
	// find it finished, not race the connection's next use of its buffers.
	w.finished.Store(true)
	s.bw.Flush()
	w.s = nil
	if w.userWDL {
		w.c.rwc.SetWriteDeadline(time.Time{})
	}
}

// reusable reports whether the connection can carry another request after this
// response (net/http's shouldReuseConnection).
func (w *response) reusable() bool {
	if w.closeAfter || w.c.werr != nil {
		return false
	}
	if !w.isHEAD && w.contentLength != -1 && bodyAllowed(w.status) && w.contentLength != w.written {
		return false // the body is short of its Content-Length: the framing is lost
	}
	return true
}

// writeContinue sends the automatic 100 Continue (RFC 9110 §10.1.1) when the
// handler first reads a body whose client asked for it. It may run on another
// goroutine than the handler's writes, hence the lock; the first write or
// final status of the handler turns it off (disableContinue).
func (w *response) writeContinue() {
	w.contMu.Lock()
	defer w.contMu.Unlock()
	if w.canContinue.Load() {
		w.canContinue.Store(false)
		w.continueSent = true
		if s := w.s; s != nil {
			s.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			s.bw.Flush()
		}
	}
}

func (w *response) disableContinue() {
	if !w.canContinue.Load() {
		return
	}
	w.contMu.Lock()
	w.canContinue.Store(false)
	w.contMu.Unlock()
}
