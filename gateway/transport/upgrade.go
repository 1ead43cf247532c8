package transport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
)

// Upgrades (RFC 9110 §7.8). An HTTP/1.1 upstream that answers 101 (Switching
// Protocols) has turned the connection into something else: the connection
// leaves the pool, and the response's Body is the connection itself, an
// io.ReadWriteCloser (as net/http's Transport does), that also has CloseWrite.
// It holds the connection's place under Options.AcquireConn until it is closed.

// errUpgradeBody: a 101 arrived while the request body was still being sent.
var errUpgradeBody = errors.New("upstream switched protocols before the request body was sent")

// switched makes the body of a 101 response. The request body, if there was
// one, must be sent whole first (RFC 9110 §7.8: the switch happens after the
// request); cancellation of the request stops applying once the switch is made.
func (pc *h1Conn) switched(resp *http.Response, stop func() bool, bodyErr chan error) (*http.Response, error) {
	if bodyErr != nil {
		if err := <-bodyErr; err != nil {
			return nil, errors.Join(errUpgradeBody, err)
		}
	}
	if !stop() {
		// The request's context ended as the answer came: the socket has a
		// past deadline.
		return nil, context.Canceled
	}
	resp.Body = &upgradedConn{pc: pc}
	return resp, nil
}

// upgradedConn is the Body of a 101 response: reads start with what the pool
// had buffered after the response head.
type upgradedConn struct {
	pc   *h1Conn
	once sync.Once
}

var _ io.ReadWriteCloser = (*upgradedConn)(nil)

func (u *upgradedConn) Read(p []byte) (int, error)  { return u.pc.br.Read(p) }
func (u *upgradedConn) Write(p []byte) (int, error) { return u.pc.c.Write(p) }

// CloseWrite half-closes the connection (a TCP FIN, or a TLS close_notify), so
// that the upstream reads the end of the stream while it may still answer.
func (u *upgradedConn) CloseWrite() error {
	if cw, ok := u.pc.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Close closes the connection and gives its place under the connection limit
// back.
func (u *upgradedConn) Close() error {
	u.once.Do(u.pc.close)
	return nil
}
