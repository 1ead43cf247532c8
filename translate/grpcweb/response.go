package grpcweb

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portcullis/portcullis/translate"
)

// trailerFlag marks the frame that carries the trailers (PROTOCOL-WEB.md,
// "Message framing": the most significant bit of the flag byte).
const trailerFlag = 0x80

var (
	errTooLarge   = errors.New("request body too large")
	errBadBase64  = errors.New("request body is not base64")
	errClientGone = errors.New("writing to the client failed")
)

func tooLargeMessage(limit int64) string {
	return fmt.Sprintf("request body is larger than %d bytes", limit)
}

// callStatus is how a call ended, as the client will read it.
type callStatus struct {
	code    codes.Code
	message string
	// fromService: the service's own grpc-status (in its trailers, or its
	// headers for a trailers-only answer) is passed on as it came, details and
	// all; otherwise code and message were made here.
	fromService bool
	reason      string // for logs, when the failure was not the service's answer
}

// webWriter is the ResponseWriter the Invoker writes the gRPC response to. It
// sends the service's headers when the first message arrives, each message as
// soon as it is complete (base64-encoded on its own in text mode, so that a
// client can decode every chunk it receives), and the trailers in end.
type webWriter struct {
	client      http.ResponseWriter
	flusher     http.Flusher
	text        bool
	contentType string
	up          http.Header // the service's headers, then "Trailer:"-prefixed trailers
	status      int
	max         int
	started     bool
	pending     []byte // an incomplete frame
	failure     error  // a framing error or a failed client write
	notGRPC     bool   // the answer is not a gRPC response
	scratch     []byte // base64 output
}

var _ http.ResponseWriter = (*webWriter)(nil)

func (w *webWriter) Header() http.Header { return w.up }

func (w *webWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *webWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.failure != nil {
		return 0, w.failure
	}
	if w.status != http.StatusOK || !isGRPC(w.up.Get("Content-Type")) {
		// An error page from something between us and the service: its body
		// means nothing to a gRPC-Web client. finish names the status.
		w.notGRPC = true
		return len(p), nil
	}
	data := p
	if len(w.pending) > 0 {
		w.pending = append(w.pending, p...)
		data = w.pending
	}
	wrote := false
	for len(data) >= 5 {
		if data[0]&trailerFlag != 0 {
			w.failure = errors.New("the service sent a frame with the trailer flag")
			return 0, w.failure
		}
		n := binary.BigEndian.Uint32(data[1:5])
		if int64(n) > int64(w.max) {
			w.failure = fmt.Errorf("a %d-byte message is over the %d-byte limit", n, w.max)
			return 0, w.failure
		}
		if len(data) < 5+int(n) {
			break
		}
		if err := w.writeFrame(data[:5+int(n)]); err != nil {
			w.failure = err
			return 0, err
		}
		wrote = true
		data = data[5+int(n):]
	}
	w.pending = append(w.pending[:0], data...)
	if wrote && w.flusher != nil {
		w.flusher.Flush()
	}
	return len(p), nil
}

// start sends the status line and the service's headers, once.
func (w *webWriter) start() {
	if w.started {
		return
	}
	w.started = true
	h := w.client.Header()
	for k, vs := range w.up {
		switch {
		case strings.HasPrefix(k, http.TrailerPrefix), k == "Trailer", k == "Content-Type", k == "Content-Length":
			continue
		}
		h[k] = vs
	}
	h["Content-Type"] = []string{w.contentType}
	h.Del("Content-Length")
	w.client.WriteHeader(http.StatusOK)
}

// writeFrame sends one whole frame (header and message).
func (w *webWriter) writeFrame(frame []byte) error {
	w.start()
	out := frame
	if w.text {
		n := base64.StdEncoding.EncodedLen(len(frame))
		if cap(w.scratch) < n {
			w.scratch = make([]byte, n)
		}
		out = w.scratch[:n]
		base64.StdEncoding.Encode(out, frame)
	}
	if _, err := w.client.Write(out); err != nil {
		return errClientGone
	}
	return nil
}

func isGRPC(ct string) bool {
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")
}

// finish decides how the call ended: the request body's failure (it caused the
// rest), the client's, the framing's, the invoker's, or the service's status.
func (w *webWriter) finish(callErr error, body *requestBody) callStatus {
	if err := body.err.get(); err != nil {
		if err == errTooLarge {
			return callStatus{code: codes.ResourceExhausted, message: tooLargeMessage(body.limit), reason: "body_too_large"}
		}
		return callStatus{code: codes.InvalidArgument, message: err.Error(), reason: "bad_request"}
	}
	switch {
	case errors.Is(w.failure, errClientGone):
		return callStatus{code: codes.Canceled, message: "client went away", reason: "client_gone"}
	case w.failure != nil:
		return callStatus{code: codes.Internal, message: "bad response from the service: " + w.failure.Error(), reason: "bad_response"}
	case callErr != nil && w.status == 0:
		if s, ok := status.FromError(callErr); ok {
			return callStatus{code: s.Code(), message: s.Message(), reason: "upstream_failed"}
		}
		return callStatus{code: codes.Unavailable, message: "upstream call failed", reason: "upstream_failed"}
	case w.status != http.StatusOK:
		return callStatus{code: translate.CodeFromHTTP(w.status), message: "the service answered HTTP " + strconv.Itoa(w.status), reason: "bad_response"}
	case w.notGRPC || !isGRPC(w.up.Get("Content-Type")):
		return callStatus{code: codes.Unknown, message: "the service did not answer with gRPC", reason: "bad_response"}
	}
	raw := w.up.Get(http.TrailerPrefix + "Grpc-Status")
	if raw == "" {
		raw = w.up.Get("Grpc-Status")
	}
	code, err := strconv.ParseUint(raw, 10, 32)
	switch {
	case raw == "" && callErr != nil:
		return callStatus{code: codes.Unavailable, message: "the stream from the service broke", reason: "upstream_failed"}
	case raw == "":
		return callStatus{code: codes.Internal, message: "the service sent no grpc-status", reason: "bad_response"}
	case err != nil:
		return callStatus{code: codes.Internal, message: "the service sent a malformed grpc-status", reason: "bad_response"}
	case len(w.pending) > 0:
		return callStatus{code: codes.Internal, message: "the service's last message was cut short", reason: "bad_response"}
	}
	return callStatus{code: codes.Code(code), fromService: true}
}

// end writes the trailers: as the last frame of a response that has sent
// messages, or as the headers of a trailers-only response.
func (w *webWriter) end(st callStatus) {
	if st.code == codes.Canceled && st.reason == "client_gone" {
		return // nobody to tell
	}
	trailers := w.trailerFields(st)
	if !w.started {
		w.started = true
		h := w.client.Header()
		for k, vs := range w.up {
			if k == "Content-Type" || k == "Content-Length" || k == "Trailer" || strings.HasPrefix(k, http.TrailerPrefix) ||
				isStatusField(k) {
				continue
			}
			h[k] = vs
		}
		for _, f := range trailers {
			h[http.CanonicalHeaderKey(f[0])] = append(h[http.CanonicalHeaderKey(f[0])], f[1])
		}
		h["Content-Type"] = []string{w.contentType}
		h["Content-Length"] = []string{"0"}
		w.client.WriteHeader(http.StatusOK)
		return
	}
	var block []byte
	for _, f := range trailers {
		block = append(append(append(append(block, f[0]...), ": "...), f[1]...), "\r\n"...)
	}
	frame := make([]byte, 5, 5+len(block))
	frame[0] = trailerFlag
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(block)))
	frame = append(frame, block...)
	if w.writeFrame(frame) == nil && w.flusher != nil {
		w.flusher.Flush()
	}
}

// trailerFields lists the trailers as lower-case name and value pairs:
// grpc-status and grpc-message first, then the service's other trailers sorted.
// A service's status is passed as it came (with grpc-status-details-bin); one
// made here replaces it, details and all.
func (w *webWriter) trailerFields(st callStatus) [][2]string {
	var out [][2]string
	src := map[string][]string{}
	for k, vs := range w.up {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			src[strings.ToLower(name)] = vs
		}
	}
	if st.fromService && len(src) == 0 {
		// A trailers-only answer: its status and metadata are in the headers.
		for _, k := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
			if vs := w.up[k]; len(vs) > 0 {
				src[strings.ToLower(k)] = vs
			}
		}
	}
	if st.fromService {
		out = append(out, [2]string{"grpc-status", first(src["grpc-status"])})
		if m := src["grpc-message"]; len(m) > 0 {
			out = append(out, [2]string{"grpc-message", m[0]})
		}
	} else {
		out = append(out, [2]string{"grpc-status", strconv.Itoa(int(st.code))})
		if st.message != "" {
			out = append(out, [2]string{"grpc-message", translate.EncodeGRPCMessage(st.message)})
		}
	}
	keys := make([]string, 0, len(src))
	for k := range src {
		if k == "grpc-status" || k == "grpc-message" || (!st.fromService && k == "grpc-status-details-bin") {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range src[k] {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

func isStatusField(k string) bool {
	return k == "Grpc-Status" || k == "Grpc-Message" || k == "Grpc-Status-Details-Bin"
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// refuse answers a request that is not sent on at all, trailers-only.
func (w *webWriter) refuse(code codes.Code, msg, reason string) translate.Outcome {
	w.end(callStatus{code: code, message: msg, reason: reason})
	return translate.Outcome{Code: code, Reason: reason}
}

// lockedErr is an error set on one goroutine and read on another.
type lockedErr struct {
	mu  sync.Mutex
	err error
}

func (l *lockedErr) set(err error) {
	l.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.mu.Unlock()
}

func (l *lockedErr) get() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
