package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// h1Pool keeps idle HTTP/1.1 connections to one address (LIFO, so the warmest
// connection is reused and the coldest age out) and runs each request on the
// caller's goroutine: no reader/writer goroutines per connection, no channels on
// the path of a bodiless request. That is where it saves over net/http.Transport.
type h1Pool struct {
	addr string
	o    Options

	mu     sync.Mutex
	idle   []*h1Conn
	closed bool
}

func newH1(addr string, o Options) *h1Pool { return &h1Pool{addr: addr, o: o} }

var _ Pool = (*h1Pool)(nil)

type h1Conn struct {
	pool    *h1Pool
	c       net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	nread   int64 // bytes read from c, to tell "nothing came back" from a partial answer
	release func()
	idleAt  time.Time
	reused  bool
}

// Read counts what comes from the socket (h1Conn is the bufio.Reader's source).
func (pc *h1Conn) Read(p []byte) (int, error) {
	n, err := pc.c.Read(p)
	pc.nread += int64(n)
	return n, err
}

func (pc *h1Conn) close() {
	pc.c.Close()
	if pc.release != nil {
		pc.release()
		pc.release = nil
	}
}

// aLongTimeAgo is a deadline that has passed: setting it unblocks pending I/O.
var aLongTimeAgo = time.Unix(1, 0)

func (p *h1Pool) get(ctx context.Context) (*h1Conn, error) {
	now := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	for n := len(p.idle); n > 0; n = len(p.idle) {
		pc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if now.Sub(pc.idleAt) < p.o.IdleTimeout {
			p.mu.Unlock()
			pc.reused = true
			return pc, nil
		}
		pc.close()
	}
	p.mu.Unlock()
	c, release, err := dial(ctx, p.addr, &p.o, "http/1.1")
	if err != nil {
		return nil, err
	}
	pc := &h1Conn{pool: p, c: c, release: release}
	pc.br = bufio.NewReaderSize(pc, 4096)
	pc.bw = bufio.NewWriterSize(c, 4096)
	return pc, nil
}

func (p *h1Pool) put(pc *h1Conn) {
	pc.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.o.MaxIdle {
		p.mu.Unlock()
		pc.close()
		return
	}
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

func (p *h1Pool) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
	return nil
}

// errStale marks a failure on a reused connection before any byte of a response:
// the upstream most likely closed the idle connection as we wrote to it.
var errStale = errors.New("reused connection closed by upstream")

func (p *h1Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	for try := 0; ; try++ {
		pc, err := p.get(req.Context())
		if err != nil {
			return nil, err
		}
		resp, err := pc.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		// Replay once on a fresh connection only if the upstream provably saw
		// nothing useful (a stale keep-alive connection) and the request can be
		// sent again: it has no body that we already consumed.
		if errors.Is(err, errStale) && try == 0 && (req.Body == nil || req.Body == http.NoBody) {
			continue
		}
		return nil, err
	}
}

func (pc *h1Conn) roundTrip(req *http.Request) (resp *http.Response, err error) {
	ctx := req.Context()
	// stop reports false when cancellation already fired and poisoned the socket.
	stop := func() bool { return true }
	if ctx.Done() != nil {
		// Cancellation (client gone, deadline) unblocks the socket at once.
		stop = context.AfterFunc(ctx, func() { pc.c.SetDeadline(aLongTimeAgo) })
	}
	defer func() {
		if err != nil {
			stop()
			pc.close()
			if ctxErr := ctx.Err(); ctxErr != nil {
				err = ctxErr
			}
		}
	}()
	start := pc.nread
	hasBody := req.Body != nil && req.Body != http.NoBody
	chunked := hasBody && (req.ContentLength < 0 || len(req.Trailer) > 0)
	if err := pc.writeHead(req, hasBody, chunked); err != nil {
		return nil, pc.classify(err, start)
	}
	var bodyErr chan error
	if hasBody {
		// The body is written beside the response read: an upstream may answer
		// (413, say) before it has read the whole body.
		bodyErr = make(chan error, 1)
		go func() {
			err := pc.writeBody(req, chunked)
			if err != nil {
				// A request that cannot be sent whole must not leave the upstream
				// waiting for the rest: break the exchange now.
				pc.c.SetDeadline(aLongTimeAgo)
			}
			bodyErr <- err
		}()
	} else if err := pc.bw.Flush(); err != nil {
		return nil, pc.classify(err, start)
	}
	for {
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			if bodyErr != nil {
				pc.c.SetDeadline(aLongTimeAgo)
				if berr := <-bodyErr; berr != nil && !isNetError(berr) {
					err = berr // the body's own failure (too large, client gone) explains it
				}
			}
			return nil, pc.classify(err, start)
		}
		// 1xx informational answers are not forwarded; wait for the final one.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return pc.switched(resp, stop, bodyErr)
	}
	reusable := !resp.Close && !req.Close
	b := &h1Body{pc: pc, rc: resp.Body, stop: stop, bodyErr: bodyErr, reusable: reusable}
	if resp.Body == http.NoBody {
		b.finish(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// classify marks errors on reused connections that saw no response byte as stale.
func (pc *h1Conn) classify(err error, start int64) error {
	if pc.reused && pc.nread == start && !isTimeout(err) {
		return errors.Join(errStale, err)
	}
	return err
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (pc *h1Conn) writeHead(req *http.Request, hasBody, chunked bool) error {
	w := pc.bw
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	w.WriteString(host)
	w.WriteString("\r\n")
	for k, vs := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue // framing is ours to write
		}
		for _, v := range vs {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	switch {
	case chunked:
		w.WriteString("Transfer-Encoding: chunked\r\n")
		if len(req.Trailer) > 0 {
			for k := range req.Trailer {
				w.WriteString("Trailer: ")
				w.WriteString(k)
				w.WriteString("\r\n")
			}
		}
	case hasBody || req.ContentLength > 0 || methodExpectsBody(req.Method):
		var buf [20]byte
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(buf[:0], max(req.ContentLength, 0), 10))
		w.WriteString("\r\n")
	}
	_, err := w.WriteString("\r\n")
	return err
}

// methodExpectsBody: RFC 9110 §8.6, a user agent sends Content-Length: 0 for these
// when there is no body, and some servers insist on it.
func methodExpectsBody(m string) bool { return m == "POST" || m == "PUT" || m == "PATCH" }

func (pc *h1Conn) writeBody(req *http.Request, chunked bool) error {
	var err error
	if chunked {
		cw := httputil.NewChunkedWriter(pc.bw)
		if _, err = copyBuffered(cw, req.Body); err == nil {
			if err = cw.Close(); err == nil {
				for k, vs := range req.Trailer {
					for _, v := range vs {
						pc.bw.WriteString(k + ": " + v + "\r\n")
					}
				}
				_, err = pc.bw.WriteString("\r\n")
			}
		}
	} else {
		var n int64
		n, err = copyBuffered(pc.bw, io.LimitReader(req.Body, req.ContentLength))
		if err == nil && n != req.ContentLength {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == nil {
		err = pc.bw.Flush()
	}
	req.Body.Close()
	return err
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

func copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return io.CopyBuffer(dst, src, *bp)
}

// h1Body returns the connection to the pool when the response body is read to its
// end, and closes it when the body is abandoned early.
type h1Body struct {
	pc       *h1Conn
	rc       io.ReadCloser
	stop     func() bool
	bodyErr  chan error
	reusable bool
	done     atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish(err == io.EOF)
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.done.Load() {
		return nil
	}
	// Abandoned before the end: the connection cannot be reused. Closing it first
	// also keeps net/http's body Close from draining a long stream.
	b.pc.c.SetDeadline(aLongTimeAgo)
	b.rc.Close()
	b.finish(false)
	return nil
}

func (b *h1Body) finish(reusable bool) {
	if b.done.Swap(true) {
		return
	}
	if !b.stop() {
		reusable = false // the context fired and set a past deadline on the socket
	}
	if b.bodyErr != nil {
		select {
		case err := <-b.bodyErr:
			reusable = reusable && err == nil
		default:
			// The upstream answered without reading all we send: close, which also
			// ends the writer.
			reusable = false
		}
	}
	if reusable && b.reusable {
		b.pc.pool.put(b.pc)
		return
	}
	b.pc.close()
	if b.bodyErr != nil && !reusable {
		// Let the writer goroutine see the closed socket and exit.
		go func(c chan error) { <-c }(b.bodyErr)
	}
}
