// Package h1 serves HTTP/1.1 (RFC 9112) with an http.Handler on a connection
// that has already been accepted, without net/http's server machinery.
//
// net/http's server starts a background-read goroutine for every request
// without a body (a goroutine spawn that wakes an idle P, an EAGAIN read and two
// SetReadDeadline calls), clones the response header and allocates several
// buffers per request. ServeConn runs the handler on the connection's own
// goroutine, reads with at most one SetReadDeadline call per request in the
// common case, snapshots the response header into bytes instead of a map clone,
// and writes a small response (status line, header and body) in one write.
//
// Parsing is net/http's own: http.ReadRequest reads the request line, the header
// section and frames the body (Content-Length or chunked), and ServeConn adds
// the checks net/http's server makes around it (Host, header names and values,
// versions, transfer codings, the header size limit), answering with the same
// status codes at the same points.
//
// The ResponseWriter is an http.Hijacker, for protocol upgrades such as
// WebSocket: bytes the server has read past the request head are handed over,
// the connection leaves the keep-alive loop, and ServeConn returns without
// closing it (Options.OnHijack tells the caller). Not supported: HTTP/2
// (including h2c and the "PRI *" preface) and http.CloseNotifier.
//
// A client that goes away is noticed when a write to it fails, when the handler
// reads the request body, or, while the handler waits on something else (a
// proxy's upstream call), once the handler has run for Options.WatchAfter
// (200 ms by default) with the body read: a reusable per-connection timer then
// starts a one-byte read of the connection, which cancels the request's context
// at the end of the stream, and hands a byte of a pipelined request back to the
// server. A request served faster starts no goroutine and allocates nothing for
// this. See README.md for this trade-off and the other differences from
// net/http.
package h1
