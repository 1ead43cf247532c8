package translate

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"

	"github.com/portcullis/portcullis/internal/grpctimeout"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Invoker sends one HTTP/2 gRPC request upstream and writes the response to w:
// headers, then the body as it arrives, then the trailers (net/http's
// "Trailer:"-prefixed header keys). gateway/filter.Handler has this shape, so the
// gateway's upstream handler is an Invoker. An error means no usable response; a
// *status.Status error (status.FromError) says which code the client gets,
// anything else is UNAVAILABLE.
type Invoker interface {
	ServeHTTP(w http.ResponseWriter, r *http.Request) error
}

// Outcome is what happened to one transcoded request, for logs and metrics.
type Outcome struct {
	// Code is the gRPC code of the call (OK also for a failed request that never
	// reached the service, whose Reason is then set).
	Code codes.Code
	// Reason is a short word when the transcoder refused or failed the request
	// itself: "bad_request", "body_too_large", "upstream_failed", "bad_response".
	Reason string
}

// Serve transcodes r (matched to route with path values vals) into a gRPC call
// sent through inv, and answers w with the JSON result. It writes every answer,
// errors included, itself.
func (t *Transcoder) Serve(w http.ResponseWriter, r *http.Request, route *Route, vals []string, inv Invoker) Outcome {
	if route.ClientStreaming() {
		return t.serveClientStream(w, r, route, vals, inv)
	}
	msg, err := t.DecodeRequest(route, vals, r)
	if err != nil {
		var re *RequestError
		if !errors.As(err, &re) {
			re = &RequestError{Code: codes.Internal, Status: http.StatusInternalServerError, Message: err.Error()}
		}
		t.WriteStatus(w, re.Status, &spb.Status{Code: int32(re.Code), Message: re.Message})
		reason := "bad_request"
		if re.Status == http.StatusRequestEntityTooLarge {
			reason = "body_too_large"
		}
		return Outcome{Code: re.Code, Reason: reason}
	}
	// Partial: required fields were checked when the JSON was decoded, and the
	// check would walk the message again.
	payload, err := proto.MarshalOptions{AllowPartial: true}.Marshal(msg)
	if err != nil {
		t.WriteStatus(w, http.StatusBadRequest, &spb.Status{Code: int32(codes.InvalidArgument), Message: "request: " + err.Error()})
		return Outcome{Code: codes.InvalidArgument, Reason: "bad_request"}
	}
	frame := make([]byte, 5+len(payload))
	putFrameHeader(frame, len(payload))
	copy(frame[5:], payload)
	out, err := t.outbound(r, route, frame)
	if err != nil {
		t.WriteStatus(w, http.StatusBadRequest, &spb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()})
		return Outcome{Code: codes.InvalidArgument, Reason: "bad_request"}
	}
	c := &capture{header: http.Header{}, max: maxResponseMessage}
	if route.ServerStreaming() {
		ss := t.newStreamSink(w, r, route)
		ss.header = c.header // the service's headers are known by its first message
		c.sink = ss
	} else {
		c.sink = &unarySink{}
	}
	sink := c.sink
	callErr := inv.ServeHTTP(c, out)
	st := c.finish(callErr)
	return sink.done(t, w, r, route, c.header, st)
}

// maxResponseMessage bounds one response message from the service.
const maxResponseMessage = 16 << 20

// outbound builds the gRPC request with frame as its body; with a nil frame
// the caller sets the body.
func (t *Transcoder) outbound(r *http.Request, route *Route, frame []byte) (*http.Request, error) {
	h := make(http.Header, 6+len(t.reqMD))
	t.requestMetadata(r.Header, h)
	h["Content-Type"] = []string{"application/grpc"}
	h["Te"] = []string{"trailers"}
	timeout := t.opts.Timeout
	if v := r.Header.Get("Grpc-Timeout"); v != "" {
		d, ok := grpctimeout.Parse(v)
		if !ok {
			return nil, errors.New("header Grpc-Timeout: " + v + " is not a gRPC timeout (digits and one of H M S m u n)")
		}
		if timeout == 0 || d < timeout {
			timeout = d
		}
	}
	if timeout > 0 {
		// The deadline travels as grpc-timeout only: the service enforces it, and
		// the gateway's forwarder bounds its wait by it and answers 504 itself.
		// A context deadline here would look like the client leaving.
		h["Grpc-Timeout"] = []string{grpctimeout.Format(timeout)}
	}
	out := &http.Request{
		Method:     http.MethodPost,
		URL:        &url.URL{Scheme: "http", Host: r.Host, Path: route.RPCPath},
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Host:       r.Host,
		RemoteAddr: r.RemoteAddr,
		TLS:        r.TLS,
	}
	if frame != nil {
		out.Body = io.NopCloser(bytes.NewReader(frame))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(frame)), nil }
		out.ContentLength = int64(len(frame))
	}
	return out.WithContext(r.Context()), nil
}

// responseSink receives the messages of a response as they arrive, then its end.
type responseSink interface {
	message(b []byte) error
	done(t *Transcoder, w http.ResponseWriter, r *http.Request, route *Route, h http.Header, st *spb.Status) Outcome
}

// capture is the ResponseWriter given to the Invoker: it parses the gRPC frames
// of the body and hands each message to the sink as it completes.
type capture struct {
	header  http.Header
	status  int
	frames  frameReader
	sink    responseSink
	max     int
	failure error // the first framing or sink error
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.failure != nil {
		return 0, c.failure
	}
	if err := c.frames.feed(p, c.max, c.sink.message); err != nil {
		c.failure = err
		return 0, err
	}
	return len(p), nil
}

// finish decides the call's status from the invoker's error, the HTTP response
// and its trailers.
func (c *capture) finish(callErr error) *spb.Status {
	var ce *clientError
	switch {
	case errors.As(c.failure, &ce):
		return &spb.Status{Code: int32(codes.Canceled), Message: "client went away"}
	case c.failure != nil:
		return &spb.Status{Code: int32(codes.Internal), Message: "bad response from the service: " + c.failure.Error()}
	case callErr != nil && c.status == 0:
		if s, ok := status.FromError(callErr); ok {
			return s.Proto()
		}
		return &spb.Status{Code: int32(codes.Unavailable), Message: "upstream call failed"}
	case c.status != http.StatusOK:
		return &spb.Status{Code: int32(CodeFromHTTP(c.status)), Message: "the service answered HTTP " + http.StatusText(c.status)}
	case !strings.HasPrefix(c.header.Get("Content-Type"), "application/grpc"):
		return &spb.Status{Code: int32(codes.Unknown), Message: "the service did not answer with gRPC (content-type " + c.header.Get("Content-Type") + ")"}
	}
	st, ok := statusFromHeader(c.header)
	switch {
	case !ok && callErr != nil:
		return &spb.Status{Code: int32(codes.Unavailable), Message: "the stream from the service broke"}
	case !ok:
		return &spb.Status{Code: int32(codes.Internal), Message: "the service sent no grpc-status"}
	case c.frames.pending() && st.Code == int32(codes.OK):
		return &spb.Status{Code: int32(codes.Internal), Message: "the service's last message was cut short"}
	}
	return st
}

// clientError marks a failed write to the client, so that the call ends as
// CANCELLED rather than blaming the service.
type clientError struct{ err error }

func (e *clientError) Error() string { return "writing to the client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// unarySink keeps the one response message of a unary call.
type unarySink struct {
	msg   []byte
	count int
}

func (u *unarySink) message(b []byte) error {
	u.count++
	if u.count > 1 {
		return errors.New("more than one message for a unary call")
	}
	u.msg = append([]byte(nil), b...)
	return nil
}

func (u *unarySink) done(t *Transcoder, w http.ResponseWriter, r *http.Request, route *Route, h http.Header, st *spb.Status) Outcome {
	code := codes.Code(st.GetCode())
	if code == codes.OK && u.count == 0 {
		st, code = &spb.Status{Code: int32(codes.Internal), Message: "the service sent no response message"}, codes.Internal
	}
	t.responseMetadata(h, w.Header())
	// The call is over, so its trailers are known: declare them before the
	// status line, or net/http would send a Content-Length and no trailers.
	trailers := http.Header{}
	if acceptsTrailers(r.Header) {
		t.trailerMetadata(h, trailers)
		for k := range trailers {
			w.Header().Add("Trailer", strings.TrimPrefix(k, http.TrailerPrefix))
		}
	}
	if code != codes.OK {
		t.WriteStatus(w, HTTPStatus(code), st)
		maps.Copy(w.Header(), trailers)
		return Outcome{Code: code}
	}
	body, err := t.encodeResponse(route, u.msg)
	if err != nil {
		t.WriteStatus(w, http.StatusInternalServerError, &spb.Status{Code: int32(codes.Internal), Message: err.Error()})
		return Outcome{Code: codes.Internal, Reason: "bad_response"}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	maps.Copy(w.Header(), trailers)
	return Outcome{Code: codes.OK}
}

// writeTrailers sets the trailers of a stream, which are known only at its end;
// a stream is chunked, so undeclared ("Trailer:"-prefixed) trailers reach the client.
func (t *Transcoder) writeTrailers(w http.ResponseWriter, r *http.Request, h http.Header) {
	if acceptsTrailers(r.Header) {
		t.trailerMetadata(h, w.Header())
	}
}

// encodeResponse turns a response message into the JSON body: the whole message,
// or the response_body field's value.
func (t *Transcoder) encodeResponse(route *Route, raw []byte) ([]byte, error) {
	msg := dynamicpb.NewMessage(route.Method.Output())
	// Partial: a proto2 required field the service left out is the service's
	// business; checking costs a walk of every message.
	if err := (proto.UnmarshalOptions{Resolver: t.opts.Resolver, AllowPartial: true}).Unmarshal(raw, msg); err != nil {
		return nil, errors.New("the service's response does not decode as " + string(route.Method.Output().FullName()) + ": " + err.Error())
	}
	if route.responseField == nil {
		return t.marshal.Marshal(msg)
	}
	return t.marshalField(msg, route.responseField)
}
