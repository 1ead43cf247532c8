package translate

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/portcullis/portcullis/translate/httprule"
)

// HTTPStatus maps a gRPC code to the HTTP status of the answer. It is the table of
// google/rpc/code.proto, the same as grpc-gateway's runtime.HTTPStatusFromCode, so
// a client sees the same status from either. Its odd choices, kept for that reason:
//   - CANCELLED is 499 (nginx's "client closed request"), not a standard status.
//   - FAILED_PRECONDITION is 400, not 412: 412 is about HTTP conditional headers.
//   - ABORTED and ALREADY_EXISTS are both 409 Conflict.
//   - OUT_OF_RANGE is 400 (a client error like INVALID_ARGUMENT, not 416).
//   - RESOURCE_EXHAUSTED is 429, also for quota the client cannot retry soon.
//   - UNKNOWN, INTERNAL, DATA_LOSS, and any code outside the table, are 500.
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// CodeFromHTTP is the code of a response that is not gRPC at all (a proxy's error
// page), per the gRPC HTTP/2 protocol's "HTTP to gRPC status code mapping".
func CodeFromHTTP(status int) codes.Code {
	switch status {
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codes.Unavailable
	}
	return codes.Unknown
}

// statusFromHeader reads grpc-status, grpc-message and grpc-status-details-bin
// from trailers (h's "Trailer:"-prefixed keys, as net/http hands undeclared
// trailers to a ResponseWriter) or, for a trailers-only response, the headers.
func statusFromHeader(h http.Header) (*spb.Status, bool) {
	get := func(k string) string {
		if v := h.Get(http.TrailerPrefix + k); v != "" {
			return v
		}
		return h.Get(k)
	}
	raw := get("Grpc-Status")
	if raw == "" {
		return nil, false
	}
	code, err := strconv.ParseUint(raw, 10, 32)
	if err != nil {
		return &spb.Status{Code: int32(codes.Internal), Message: "malformed grpc-status " + strconv.Quote(raw)}, true
	}
	st := &spb.Status{Code: int32(code), Message: decodeGRPCMessage(get("Grpc-Message"))}
	if bin := get("Grpc-Status-Details-Bin"); bin != "" {
		if b, err := decodeBinHeader(bin); err == nil {
			var full spb.Status
			// The details carry the authoritative status; keep them only when
			// their code agrees with grpc-status, as grpc-go does.
			if proto.Unmarshal(b, &full) == nil && full.Code == st.Code {
				st = &full
			}
		}
	}
	return st, true
}

// decodeGRPCMessage undoes the percent-encoding of grpc-message; a malformed one
// is returned as it came.
func decodeGRPCMessage(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// EncodeGRPCMessage percent-encodes a grpc-message value as the gRPC HTTP/2
// protocol asks: bytes outside printable ASCII, and '%' itself.
func EncodeGRPCMessage(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c > '~' || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

// decodeBinHeader decodes a "-bin" metadata value: base64, padded or not.
func decodeBinHeader(s string) ([]byte, error) {
	if len(s)%4 == 0 {
		return base64.StdEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// RoutingStatus is the answer to a request no binding takes, as grpc-gateway
// gives it: 404 NOT_FOUND, 405 UNIMPLEMENTED, or 400 INVALID_ARGUMENT for a
// malformed path.
func RoutingStatus(res httprule.Result) (int, *spb.Status) {
	switch res {
	case httprule.MethodNotAllowed:
		return http.StatusMethodNotAllowed, &spb.Status{Code: int32(codes.Unimplemented), Message: http.StatusText(http.StatusMethodNotAllowed)}
	case httprule.BadPath:
		return http.StatusBadRequest, &spb.Status{Code: int32(codes.InvalidArgument), Message: http.StatusText(http.StatusBadRequest)}
	default:
		return http.StatusNotFound, &spb.Status{Code: int32(codes.NotFound), Message: http.StatusText(http.StatusNotFound)}
	}
}

// WriteStatus answers with st as a google.rpc.Status JSON body and httpStatus.
func (t *Transcoder) WriteStatus(w http.ResponseWriter, httpStatus int, st *spb.Status) {
	b, err := t.marshal.Marshal(st)
	if err != nil {
		// A detail whose type is unknown cannot be written as JSON; say so
		// rather than drop the whole answer (grpc-gateway's fallback).
		httpStatus = http.StatusInternalServerError
		b = []byte(`{"code":13,"message":"failed to marshal error message","details":[]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(httpStatus)
	w.Write(b)
}
