package proxy

import (
	"io"
	"net"
	"time"
)

// SpliceResult is what a spliced tunnel moved and why it ended.
type SpliceResult struct {
	FromClient, ToClient int64
	IdleClosed           bool // the idle timeout ended it
}

// Splice runs the tunnel of tunnel.go (half-close passed on, idle timeout,
// both sides closed at the end) between a client connection a handler has
// taken over and an upstream connection, for tunnels other than upgrades (the
// egress's CONNECT). clientR reads the client's bytes, starting with any the
// server had read already; idle must be positive. It returns when the tunnel
// has ended.
func Splice(client net.Conn, clientR io.Reader, upstream io.ReadWriteCloser, idle time.Duration) SpliceResult {
	res := runTunnel(client, clientR, upstream, idle)
	return SpliceResult{FromClient: res.fromClient, ToClient: res.toClient, IdleClosed: res.idleClosed}
}
