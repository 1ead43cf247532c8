package translate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// ContentTypeNDJSON is the content type of a client stream's body: one JSON
// request message per line. The transcoder reads any body the same way; the
// type is what clients should send.
const ContentTypeNDJSON = "application/x-ndjson"

// serveClientStream calls a client-streaming method: every non-blank line of
// the body is one request message (the whole message: the rule's body is "*"),
// with the path variables set in each. Lines are decoded and sent as the
// transport asks for them, so a long stream is never held whole; the answer is
// the one response message, as for a unary call.
func (t *Transcoder) serveClientStream(w http.ResponseWriter, r *http.Request, route *Route, vals []string, inv Invoker) Outcome {
	body := &ndjsonFrames{t: t, route: route, vals: vals, limit: int(t.opts.MaxBodyBytes)}
	if r.Body != nil && r.Body != http.NoBody {
		body.src = bufio.NewReaderSize(r.Body, 32<<10)
	}
	out, err := t.outbound(r, route, nil)
	if err != nil {
		t.WriteStatus(w, http.StatusBadRequest, &spb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()})
		return Outcome{Code: codes.InvalidArgument, Reason: "bad_request"}
	}
	out.Body, out.ContentLength = body, -1
	c := &capture{header: http.Header{}, max: maxResponseMessage, sink: &unarySink{}}
	callErr := inv.ServeHTTP(c, out)
	if re := body.failure(); re != nil {
		// The stream was cut because of the request: that, not what the
		// service or transport made of the cut, is the answer.
		t.WriteStatus(w, re.Status, &spb.Status{Code: int32(re.Code), Message: re.Message})
		reason := "bad_request"
		if re.Status == http.StatusRequestEntityTooLarge {
			reason = "body_too_large"
		}
		return Outcome{Code: re.Code, Reason: reason}
	}
	return c.sink.done(t, w, r, route, c.header, c.finish(callErr))
}

// ndjsonFrames is the request body of a client-streaming call: it reads lines
// of JSON from the client and hands them to the transport as gRPC frames. The
// transport reads it on its own goroutine; the first error is kept under a lock
// for the handler to read.
type ndjsonFrames struct {
	t     *Transcoder
	route *Route
	vals  []string
	src   *bufio.Reader // nil: no body
	limit int
	out   []byte // frame bytes not read yet
	line  []byte
	n     int
	eof   bool

	mu  sync.Mutex
	err *RequestError
}

var _ io.ReadCloser = (*ndjsonFrames)(nil)

func (s *ndjsonFrames) failure() *RequestError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *ndjsonFrames) fail(re *RequestError) error {
	s.mu.Lock()
	if s.err == nil {
		s.err = re
	}
	s.mu.Unlock()
	return re
}

func (s *ndjsonFrames) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.eof || s.src == nil {
			return 0, io.EOF
		}
		line, err := s.readLine()
		if err != nil {
			return 0, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := s.encode(line); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

// readLine returns the next line without its newline, at most limit bytes.
func (s *ndjsonFrames) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		chunk, err := s.src.ReadSlice('\n')
		s.line = append(s.line, chunk...)
		if len(s.line) > s.limit+1 { // +1: the newline is not the message's
			return nil, s.fail(&RequestError{Code: codes.InvalidArgument, Status: http.StatusRequestEntityTooLarge,
				Message: fmt.Sprintf("message %d of the stream is larger than %d bytes", s.n+1, s.limit)})
		}
		switch {
		case err == nil:
			return bytes.TrimSuffix(s.line, []byte("\n")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			s.eof = true
			return s.line, nil
		default:
			return nil, s.fail(badRequest("reading the body: %v", err))
		}
	}
}

// encode decodes one JSON message, sets the path variables and frames it.
func (s *ndjsonFrames) encode(line []byte) error {
	s.n++
	msg := dynamicpb.NewMessage(s.route.Method.Input())
	if err := s.t.unmarsh.Unmarshal(line, msg); err != nil {
		return s.fail(badRequest("body: message %d of the stream: %s", s.n, jsonError(err)))
	}
	for i, fds := range s.route.pathFields {
		v, err := parseValue(fds[len(fds)-1], s.vals[i])
		if err != nil {
			return s.fail(badRequest("path variable %s: %v", s.route.Binding.Template.Variables[i].Field(), err))
		}
		setPath(msg, fds, v)
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		return s.fail(badRequest("message %d of the stream: %v", s.n, err))
	}
	s.out = append(make([]byte, 5, 5+len(b)), b...)
	putFrameHeader(s.out, len(b))
	return nil
}

func (s *ndjsonFrames) Close() error { return nil }
