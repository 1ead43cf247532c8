package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

// copyResponse writes resp to w: end-to-end headers, the status, the body (flushed
// as it comes when the length is unknown, so streams such as gRPC and server-sent
// events are not held back), then the trailers. After the status has gone out a
// failure cannot be answered any more; the stream is aborted so the client sees a
// truncated response instead of a complete-looking one.
func copyResponse(w http.ResponseWriter, resp *http.Response, cookie *http.Cookie) error {
	defer resp.Body.Close()
	h := w.Header()
	copyResponseHeader(h, resp.Header)
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	if cookie != nil {
		h.Add("Set-Cookie", cookie.String())
	}
	w.WriteHeader(resp.StatusCode)
	stream := resp.ContentLength < 0
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var flusher http.Flusher
	if stream {
		flusher, _ = w.(http.Flusher)
		if flusher != nil {
			flusher.Flush() // the headers now: a stream may wait long for its first byte
		}
	}
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return errClientGone
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return &streamError{err: rerr}
		}
	}
	for k, vs := range resp.Trailer {
		h[http.TrailerPrefix+k] = vs
	}
	return nil
}

// streamError is a failure after the response started; the core aborts the
// connection (http.ErrAbortHandler) rather than answering.
type streamError struct{ err error }

func (e *streamError) Error() string { return "upstream stream failed: " + e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// IsStreamError reports whether err happened after the response had started.
func IsStreamError(err error) bool {
	var se *streamError
	return errors.As(err, &se)
}
