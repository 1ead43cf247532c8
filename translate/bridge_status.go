package translate

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
)

// CodeFromREST maps the HTTP status of a REST API's answer to the gRPC code the
// bridged call ends with: the inverse of HTTPStatus where HTTPStatus is one to
// one, and a choice where it is not:
//   - 400 is INVALID_ARGUMENT (FAILED_PRECONDITION and OUT_OF_RANGE are 400 too,
//     but a plain 400 says the request was wrong);
//   - 409 is ABORTED (ALREADY_EXISTS is 409 too; an API that means it says so
//     in a google.rpc.Status body, which wins);
//   - 405 is UNIMPLEMENTED: the API has no such operation at that path;
//   - 408 and 504 are DEADLINE_EXCEEDED, 412 FAILED_PRECONDITION, 413 and 429
//     RESOURCE_EXHAUSTED, 416 OUT_OF_RANGE, 499 CANCELLED;
//   - 502 and 503 are UNAVAILABLE (the gRPC protocol's mapping, so clients
//     retry), 500 INTERNAL, 501 UNIMPLEMENTED;
//   - anything else (3xx included: redirects are not followed) is UNKNOWN.
func CodeFromREST(status int) codes.Code {
	switch status {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case http.StatusConflict:
		return codes.Aborted
	case http.StatusPreconditionFailed:
		return codes.FailedPrecondition
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusRequestedRangeNotSatisfiable:
		return codes.OutOfRange
	case 499:
		return codes.Canceled
	case http.StatusInternalServerError:
		return codes.Internal
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	if status >= 200 && status < 300 {
		return codes.OK
	}
	return codes.Unknown
}

// maxRESTMessage bounds the message taken from a REST error body.
const maxRESTMessage = 1024

// restError makes the status of a non-2xx REST answer. A google.rpc.Status body
// (what grpc-gateway and Google APIs send) whose code agrees with the HTTP status
// is taken whole, details included; otherwise the code is CodeFromREST's and the
// message the body's "message" (or "error.message", or "error" when a string).
func (b *Bridge) restError(resp *restCapture) *spb.Status {
	code := CodeFromREST(resp.status)
	msg := "the REST API answered HTTP " + strconv.Itoa(resp.status)
	if isJSON(resp.header.Get("Content-Type")) && len(resp.body) > 0 {
		var st spb.Status
		opts := protojson.UnmarshalOptions{DiscardUnknown: true, Resolver: b.opts.Resolver}
		if opts.Unmarshal(resp.body, &st) == nil && st.Code > 0 && st.Code <= 16 && HTTPStatus(codes.Code(st.Code)) == resp.status {
			return &st
		}
		var loose struct {
			Message string          `json:"message"`
			Error   json.RawMessage `json:"error"`
		}
		if json.Unmarshal(resp.body, &loose) == nil {
			var nested struct {
				Message string `json:"message"`
			}
			var plain string
			switch {
			case loose.Message != "":
				msg = loose.Message
			case json.Unmarshal(loose.Error, &nested) == nil && nested.Message != "":
				msg = nested.Message
			case json.Unmarshal(loose.Error, &plain) == nil && plain != "":
				msg = plain
			}
		}
	}
	if len(msg) > maxRESTMessage {
		msg = msg[:maxRESTMessage]
	}
	return &spb.Status{Code: int32(code), Message: msg}
}

func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
