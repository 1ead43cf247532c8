package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A tunnel copies bytes both ways between a client connection and an upstream
// one after both agreed to switch protocols (an upgrade). It ends when
//
//   - either side fails (a read or write error, or a reset): both are closed;
//   - either side ends its stream (EOF): the end is passed on as a half-close
//     (TCP FIN, TLS close_notify), so the other side reads everything that was
//     sent and then the end; the other direction may carry the peer's last
//     bytes (a WebSocket Close frame, say) for up to halfCloseGrace, then both
//     are closed; at once if the other side ends too, or cannot be half-closed;
//   - no byte has moved either way for the idle timeout: both are closed.
const (
	halfCloseGrace = 5 * time.Second
	// tunnelBufSize is the copy buffer of each direction. A tunnel holds two
	// for its whole life, mostly blocked in a read: small buffers keep ten
	// thousand idle WebSockets at 160 MiB rather than the 640 MiB of 32 KiB ones.
	tunnelBufSize = 8 << 10
)

var tunnelBufPool = sync.Pool{New: func() any { b := make([]byte, tunnelBufSize); return &b }}

// tunnelResult is what a tunnel moved, for the access log and metrics.
type tunnelResult struct {
	fromClient, toClient int64
	idleClosed           bool // the idle timeout ended it
}

type tunnel struct {
	client   net.Conn
	upstream io.ReadWriteCloser
	idle     time.Duration
	grace    time.Duration // halfCloseGrace; shorter in tests
	start    time.Time
	last     atomic.Int64 // time.Since(start) when bytes last moved
	running  atomic.Int32 // directions still copying

	mu         sync.Mutex
	closed     bool
	idleClosed bool
	idleTimer  *time.Timer
	graceTimer *time.Timer
}

// runTunnel splices client and upstream until the tunnel ends (see above) and
// closes both. clientR reads the client's bytes, starting with any the server
// had read already; idle must be positive. It returns when both directions
// have stopped.
func runTunnel(client net.Conn, clientR io.Reader, upstream io.ReadWriteCloser, idle time.Duration) tunnelResult {
	t := &tunnel{client: client, upstream: upstream, idle: idle, grace: halfCloseGrace}
	return t.run(clientR)
}

func (t *tunnel) run(clientR io.Reader) tunnelResult {
	t.start = time.Now()
	t.running.Store(2)
	t.mu.Lock()
	t.idleTimer = time.AfterFunc(t.idle, t.checkIdle)
	t.mu.Unlock()
	var res tunnelResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		res.fromClient = t.pipe(t.upstream, clientR)
	}()
	res.toClient = t.pipe(t.client, t.upstream)
	<-done
	t.close(false)
	t.mu.Lock()
	t.idleTimer.Stop()
	if t.graceTimer != nil {
		t.graceTimer.Stop()
	}
	res.idleClosed = t.idleClosed
	t.mu.Unlock()
	return res
}

// pipe copies src to dst until src ends or either fails, then passes the end
// on, and returns the bytes written to dst.
func (t *tunnel) pipe(dst io.Writer, src io.Reader) int64 {
	bp := tunnelBufPool.Get().(*[]byte)
	defer tunnelBufPool.Put(bp)
	buf := *bp
	var n int64
	var err error
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			t.last.Store(int64(time.Since(t.start)))
			if werr != nil {
				err = werr
				break
			}
		}
		if rerr != nil {
			if rerr != io.EOF {
				err = rerr
			}
			break
		}
	}
	t.ended(dst, err)
	return n
}

// ended runs when one direction has stopped: with an error, as the last one,
// or when dst cannot be half-closed, the tunnel closes; otherwise dst gets the
// end of the stream and the other direction its grace period.
func (t *tunnel) ended(dst io.Writer, err error) {
	if t.running.Add(-1) == 0 || err != nil || closeWrite(dst) != nil {
		t.close(false)
		return
	}
	t.mu.Lock()
	if !t.closed && t.graceTimer == nil {
		t.graceTimer = time.AfterFunc(t.grace, func() { t.close(false) })
	}
	t.mu.Unlock()
}

func closeWrite(w io.Writer) error {
	if cw, ok := w.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// checkIdle runs on the idle timer: it closes a tunnel quiet for the idle
// timeout, or sets the timer again for the rest of it.
func (t *tunnel) checkIdle() {
	quiet := time.Since(t.start) - time.Duration(t.last.Load())
	if quiet >= t.idle {
		t.close(true)
		return
	}
	t.mu.Lock()
	if !t.closed {
		t.idleTimer.Reset(t.idle - quiet)
	}
	t.mu.Unlock()
}

// close closes both sides once; the copies blocked on them return.
func (t *tunnel) close(idle bool) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed, t.idleClosed = true, idle
	t.mu.Unlock()
	t.client.Close()
	t.upstream.Close()
}
