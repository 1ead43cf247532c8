package translate

import (
	"net/http"
	"strings"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// streamSink writes a server stream to the client message by message, framed as
// newline-delimited JSON ({"result": msg} per line, and {"error": status} for a
// failure after the first message: grpc-gateway's framing) or, when the client
// accepts text/event-stream, as Server-Sent Events ("data: msg", and an "error"
// event for a failure).
type streamSink struct {
	t       *Transcoder
	w       http.ResponseWriter
	route   *Route
	header  http.Header // the upstream response headers, for metadata
	sse     bool
	started bool
	count   int
	flusher http.Flusher
}

func (t *Transcoder) newStreamSink(w http.ResponseWriter, r *http.Request, route *Route) *streamSink {
	s := &streamSink{t: t, w: w, route: route, sse: acceptsEventStream(r.Header)}
	s.flusher, _ = w.(http.Flusher)
	return s
}

// acceptsEventStream reports an Accept header naming text/event-stream.
func acceptsEventStream(h http.Header) bool {
	for _, v := range h.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
				return true
			}
		}
	}
	return false
}

// start sends the status line and headers, once, before the first message.
func (s *streamSink) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	if s.header != nil {
		s.t.responseMetadata(s.header, h)
	}
	if s.sse {
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
	} else {
		h.Set("Content-Type", "application/json")
	}
	h.Del("Content-Length")
	s.w.WriteHeader(http.StatusOK)
}

func (s *streamSink) message(b []byte) error {
	body, err := s.t.encodeResponse(s.route, b)
	if err != nil {
		return err
	}
	s.start()
	if err := s.write(body, false); err != nil {
		return &clientError{err: err}
	}
	s.count++
	return nil
}

// write frames one JSON value: a result or, with isError, a status.
func (s *streamSink) write(js []byte, isError bool) error {
	var b []byte
	switch {
	case s.sse && isError:
		b = append(append(append(b, "event: error\ndata: "...), js...), "\n\n"...)
	case s.sse:
		b = append(append(append(b, "data: "...), js...), "\n\n"...)
	case isError:
		b = append(append(append(b, `{"error":`...), js...), "}\n"...)
	default:
		b = append(append(append(b, `{"result":`...), js...), "}\n"...)
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	if s.flusher != nil {
		s.flusher.Flush()
	}
	return nil
}

func (s *streamSink) done(t *Transcoder, w http.ResponseWriter, r *http.Request, route *Route, h http.Header, st *spb.Status) Outcome {
	code := codes.Code(st.GetCode())
	if code == codes.OK {
		s.start() // an empty stream is a 200 with no body
		t.writeTrailers(w, r, h)
		return Outcome{Code: codes.OK}
	}
	js, err := t.marshal.Marshal(st)
	if err != nil {
		js = []byte(`{"code":13,"message":"failed to marshal error message","details":[]}`)
	}
	if !s.started {
		// Nothing sent yet: the status can still say what happened. The body is
		// the stream's error record, as grpc-gateway writes it.
		t.responseMetadata(h, w.Header())
		if s.sse {
			t.WriteStatus(w, HTTPStatus(code), st)
			return Outcome{Code: code}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(HTTPStatus(code))
	}
	s.write(js, true)
	t.writeTrailers(w, r, h)
	return Outcome{Code: code}
}
