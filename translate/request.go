package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// RequestError is a request the transcoder refuses before any call: a body that is
// not JSON of the message, a path or query value of the wrong type. Code is the
// gRPC code of the answer, Status its HTTP status (they differ only for a body
// over the limit, answered 413).
type RequestError struct {
	Code    codes.Code
	Status  int
	Message string
}

func (e *RequestError) Error() string { return e.Message }

func badRequest(format string, args ...any) *RequestError {
	return &RequestError{Code: codes.InvalidArgument, Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// DecodeRequest builds the request message of route from r: the body first (the
// whole message for body "*", one field for body "field"), then the path
// variables (vals, as Match returned them), then the query parameters for fields
// neither set. A PATCH with a FieldMask update_mask that the client left out gets
// one listing the fields the body carries, relative to the body field, as
// grpc-gateway does. Errors are *RequestError.
func (t *Transcoder) DecodeRequest(route *Route, vals []string, r *http.Request) (*dynamicpb.Message, error) {
	msg := dynamicpb.NewMessage(route.Method.Input())
	var body []byte
	if route.Binding.Body != "" {
		var err error
		if body, err = t.readBody(r); err != nil {
			return nil, err
		}
		if err := t.decodeBody(route, msg, body); err != nil {
			return nil, err
		}
	}
	for i, fds := range route.pathFields {
		leaf := fds[len(fds)-1]
		v, err := parseValue(leaf, vals[i])
		if err != nil {
			return nil, badRequest("path variable %s: %v", route.Binding.Template.Variables[i].Field(), err)
		}
		setPath(msg, fds, v)
	}
	if route.Binding.Body != "*" {
		if err := applyQuery(msg, r.URL.RawQuery, route.bound); err != nil {
			return nil, badRequest("%v", err)
		}
	}
	if route.inferMask != nil && len(bytes.TrimSpace(body)) > 0 {
		if mask := msg.Get(route.inferMask).Message(); !msg.Has(route.inferMask) || mask.Get(mask.Descriptor().Fields().ByName("paths")).List().Len() == 0 {
			paths, err := maskFromBody(body, route.bodyField[0].Message())
			if err != nil {
				return nil, badRequest("body: %v", err)
			}
			fm := msg.Mutable(route.inferMask).Message()
			list := fm.Mutable(fm.Descriptor().Fields().ByName("paths")).List()
			for _, p := range paths {
				list.Append(protoreflect.ValueOfString(p))
			}
		}
	}
	return msg, nil
}

// readBody reads the body up to the limit; one byte more is a 413.
func (t *Transcoder) readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	limit := t.opts.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, badRequest("reading the body: %v", err)
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(limit)
	}
	return b, nil
}

func tooLarge(limit int64) *RequestError {
	return &RequestError{Code: codes.InvalidArgument, Status: http.StatusRequestEntityTooLarge,
		Message: fmt.Sprintf("request body is larger than %d bytes", limit)}
}

// decodeBody puts the JSON body into msg or into the body field. An empty body
// leaves the message as it is.
func (t *Transcoder) decodeBody(route *Route, msg *dynamicpb.Message, body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if route.bodyField == nil {
		if err := t.unmarsh.Unmarshal(body, msg); err != nil {
			return badRequest("body: %s", jsonError(err))
		}
		return nil
	}
	leaf := route.bodyField[len(route.bodyField)-1]
	if leaf.Message() != nil && !leaf.IsList() && !leaf.IsMap() {
		target := protoreflect.Message(msg)
		for _, fd := range route.bodyField {
			target = target.Mutable(fd).Message()
		}
		if err := t.unmarsh.Unmarshal(body, target.Interface()); err != nil {
			return badRequest("body: %s", jsonError(err))
		}
		return nil
	}
	// A scalar, repeated or map body field: wrap it as {"field": body} in its
	// parent, and let protojson parse the value as it would inside a message.
	parent := protoreflect.Message(msg)
	for _, fd := range route.bodyField[:len(route.bodyField)-1] {
		parent = parent.Mutable(fd).Message()
	}
	name, _ := json.Marshal(leaf.JSONName())
	wrapped := make([]byte, 0, len(body)+len(name)+3)
	wrapped = append(append(append(append(wrapped, '{'), name...), ':'), body...)
	wrapped = append(wrapped, '}')
	tmp := dynamicpb.NewMessage(parent.Descriptor())
	if err := t.unmarsh.Unmarshal(wrapped, tmp); err != nil {
		return badRequest("body: %s", jsonError(err))
	}
	parent.Set(leaf, tmp.Get(leaf))
	return nil
}

// jsonError strips protojson's "proto: " prefix and its internal wording, which
// say nothing to a REST client.
func jsonError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "proto:")
	s = strings.TrimSpace(strings.ReplaceAll(s, "\u00a0", " "))
	if s == "" {
		return "malformed JSON"
	}
	return s
}

// maskFromBody lists the fields a JSON object sets, as proto-name paths, going
// into nested objects of message fields; a map, list, Struct or Any is one path.
func maskFromBody(body []byte, md protoreflect.MessageDescriptor) ([]string, error) {
	var root map[string]json.RawMessage
	if err := json.Unmarshal(body, &root); err != nil {
		return nil, errors.New("a field mask can only be derived from a JSON object")
	}
	var paths []string
	var walk func(obj map[string]json.RawMessage, md protoreflect.MessageDescriptor, prefix string, depth int) error
	walk = func(obj map[string]json.RawMessage, md protoreflect.MessageDescriptor, prefix string, depth int) error {
		if depth > 32 {
			return errors.New("objects nested too deep")
		}
		for k, raw := range obj {
			fd := md.Fields().ByName(protoreflect.Name(k))
			if fd == nil {
				fd = md.Fields().ByJSONName(k)
			}
			if fd == nil {
				return fmt.Errorf("%s has no field %q", md.FullName(), k)
			}
			p := prefix + string(fd.Name())
			var sub map[string]json.RawMessage
			if fd.Message() != nil && !fd.IsList() && !fd.IsMap() && !opaqueForMask(fd.Message().FullName()) &&
				json.Unmarshal(raw, &sub) == nil && len(sub) > 0 {
				if err := walk(sub, fd.Message(), p+".", depth+1); err != nil {
					return err
				}
				continue
			}
			paths = append(paths, p)
		}
		return nil
	}
	if err := walk(root, md, "", 0); err != nil {
		return nil, err
	}
	slices.Sort(paths)
	return paths, nil
}

// opaqueForMask are message types whose JSON object is one value, not fields.
func opaqueForMask(name protoreflect.FullName) bool {
	switch name {
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.Any",
		"google.protobuf.ListValue", "google.protobuf.Timestamp", "google.protobuf.Duration":
		return true
	}
	return queryableWKT(name)
}
