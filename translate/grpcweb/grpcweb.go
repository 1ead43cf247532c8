// Package grpcweb lets browsers call gRPC services: it turns a gRPC-Web request
// (binary "application/grpc-web", or base64 "application/grpc-web-text", over any
// HTTP version) into a gRPC call over HTTP/2 sent through an Invoker, and the
// answer back into gRPC-Web: the same length-prefixed messages, then the call's
// trailers as one last frame whose flag byte is 0x80, since browsers cannot read
// HTTP trailers. It follows the gRPC-Web protocol (grpc/grpc doc/PROTOCOL-WEB.md).
//
// Messages are not decoded: the proxy needs no descriptors, and a binary call
// passes through byte for byte apart from the framing of the trailers.
//
// It is not for CORS (the gateway's cors filter answers preflights and adds the
// headers; docs/translate.md lists the ones gRPC-Web needs), nor for REST/JSON
// (package translate), nor for client or bidirectional streams, which browsers
// cannot send.
package grpcweb

import (
	"io"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/portcullis/portcullis/translate"
)

// Content types of gRPC-Web. A codec suffix ("+proto", "+json") may follow
// either; it is passed on to the service as "application/grpc+<codec>".
const (
	ContentTypeBinary = "application/grpc-web"
	ContentTypeText   = "application/grpc-web-text"
)

// Mode is how a gRPC-Web body is encoded.
type Mode uint8

const (
	// Binary is the gRPC framing as it is ("application/grpc-web").
	Binary Mode = iota + 1
	// Text is the same bytes in base64 ("application/grpc-web-text"), for
	// clients that can only read text from XMLHttpRequest.
	Text
)

// Options are the proxy's limits. Every field documents its zero value.
type Options struct {
	// MaxRequestBytes bounds a request body after base64 decoding. A larger
	// one ends the call with RESOURCE_EXHAUSTED. Zero: DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// MaxResponseMessage bounds one response message, which the proxy holds
	// whole so that every write to the client is a complete frame. Zero:
	// DefaultMaxResponseMessage.
	MaxResponseMessage int
}

// Defaults of Options.
const (
	DefaultMaxRequestBytes    = 4 << 20
	DefaultMaxResponseMessage = 16 << 20
)

// Proxy serves gRPC-Web requests. It is immutable and safe for concurrent use.
type Proxy struct {
	opts Options
}

// New returns a Proxy with opts, zero fields set to their defaults.
func New(opts Options) *Proxy {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.MaxResponseMessage <= 0 {
		opts.MaxResponseMessage = DefaultMaxResponseMessage
	}
	return &Proxy{opts: opts}
}

// RequestMode reports whether contentType is gRPC-Web, in which mode, and its
// codec suffix ("+proto", or "" when none is named).
func RequestMode(contentType string) (mode Mode, codec string, ok bool) {
	ct, _, _ := strings.Cut(contentType, ";")
	ct = strings.ToLower(strings.TrimSpace(ct))
	rest, isText := strings.CutPrefix(ct, ContentTypeText)
	if !isText {
		var isBinary bool
		if rest, isBinary = strings.CutPrefix(ct, ContentTypeBinary); !isBinary {
			return 0, "", false
		}
	}
	if rest != "" && (rest[0] != '+' || len(rest) == 1) {
		return 0, "", false // "application/grpc-webfoo", "application/grpc-web+"
	}
	if isText {
		return Text, rest, true
	}
	return Binary, rest, true
}

// IsGRPCWeb reports a gRPC-Web request, by its content type.
func IsGRPCWeb(r *http.Request) bool {
	_, _, ok := RequestMode(r.Header.Get("Content-Type"))
	return ok
}

// acceptsText reports an Accept header asking for the text encoding (the client
// may send a binary body and still need a text answer).
func acceptsText(h http.Header) bool {
	for _, v := range h.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.HasPrefix(strings.ToLower(strings.TrimSpace(mt)), ContentTypeText) {
				return true
			}
		}
	}
	return false
}

// droppedRequestHeaders describe the gRPC-Web request, not the gRPC call; the
// content type and length are set anew.
var droppedRequestHeaders = []string{"Content-Type", "Content-Length", "Accept", "Accept-Encoding", "X-Grpc-Web"}

// Serve answers a gRPC-Web request r (IsGRPCWeb) by calling the service through
// inv. It writes every answer, errors included, itself: a call that fails
// before the service answers is a trailers-only response (HTTP 200, grpc-status
// in the headers), as gRPC-Web clients expect.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, inv translate.Invoker) translate.Outcome {
	mode, codec, ok := RequestMode(r.Header.Get("Content-Type"))
	out := &webWriter{
		client: w,
		text:   mode == Text || acceptsText(r.Header),
		up:     http.Header{},
		max:    p.opts.MaxResponseMessage,
	}
	out.contentType = ContentTypeBinary + codecOrProto(codec)
	if out.text {
		out.contentType = ContentTypeText + codecOrProto(codec)
	}
	out.flusher, _ = w.(http.Flusher)
	switch {
	case !ok:
		return out.refuse(codes.InvalidArgument, "content-type "+r.Header.Get("Content-Type")+" is not gRPC-Web", "bad_request")
	case r.Method != http.MethodPost:
		// gRPC-Web is POST only; a 405 tells a browser's developer what is wrong
		// better than a status in a body.
		w.Header().Set("Allow", http.MethodPost)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return translate.Outcome{Code: codes.Unimplemented, Reason: "method_not_allowed"}
	case r.ContentLength > p.opts.MaxRequestBytes && mode == Binary:
		return out.refuse(codes.ResourceExhausted, tooLargeMessage(p.opts.MaxRequestBytes), "body_too_large")
	}
	body := newRequestBody(r.Body, mode == Text, p.opts.MaxRequestBytes)
	callErr := inv.ServeHTTP(out, p.outbound(r, codec, mode, body))
	st := out.finish(callErr, body)
	out.end(st)
	reason := st.reason
	if reason == "" && st.code != codes.OK {
		reason = "grpc_" + strings.ToLower(st.code.String())
	}
	return translate.Outcome{Code: st.code, Reason: reason}
}

func codecOrProto(codec string) string {
	if codec == "" {
		return "+proto"
	}
	return codec
}

// outbound builds the gRPC request: the same path and end-to-end headers, the
// gRPC content type, TE: trailers, and the decoded body. It never modifies r.
func (p *Proxy) outbound(r *http.Request, codec string, mode Mode, body *requestBody) *http.Request {
	h := make(http.Header, len(r.Header)+2)
	for k, vs := range r.Header {
		h[k] = vs
	}
	for _, k := range droppedRequestHeaders {
		delete(h, k)
	}
	h["Content-Type"] = []string{"application/grpc" + codec}
	h["Te"] = []string{"trailers"}
	length := int64(-1)
	if mode == Binary && r.ContentLength >= 0 {
		length = r.ContentLength
	}
	out := &http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath},
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		Body:          body,
		ContentLength: length,
		Host:          r.Host,
		RemoteAddr:    r.RemoteAddr,
		TLS:           r.TLS,
	}
	if length == 0 {
		out.Body = http.NoBody
	}
	return out.WithContext(r.Context())
}

// requestBody is the request body as the service gets it: decoded from base64
// in text mode, and bounded. The transport reads it on its own goroutine, so its
// error is kept under a lock for finish to read.
type requestBody struct {
	src   io.ReadCloser
	text  *base64Stream
	limit int64
	n     int64
	err   lockedErr
}

var _ io.ReadCloser = (*requestBody)(nil)

func newRequestBody(src io.ReadCloser, text bool, limit int64) *requestBody {
	if src == nil {
		src = http.NoBody
	}
	b := &requestBody{src: src, limit: limit}
	if text {
		b.text = &base64Stream{src: src}
	}
	return b
}

func (b *requestBody) Read(p []byte) (int, error) {
	var n int
	var err error
	if b.text != nil {
		n, err = b.text.Read(p)
		if err == errBadBase64 || err == errTruncatedBase64 {
			b.err.set(errBadBase64) // the client's mistake; a read error is not
		}
	} else {
		n, err = b.src.Read(p)
	}
	b.n += int64(n)
	if b.n > b.limit {
		b.err.set(errTooLarge)
		return 0, errTooLarge
	}
	return n, err
}

func (b *requestBody) Close() error { return b.src.Close() }
