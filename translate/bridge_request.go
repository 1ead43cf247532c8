package translate

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/portcullis/portcullis/translate/httprule"
)

// restRequest builds the REST request of one call: the path from the template
// and the path fields, the body per the rule, every other populated field as a
// query parameter (none with body "*", where they all go in the body).
func (b *Bridge) restRequest(ctx context.Context, r *http.Request, route *Route, msg *dynamicpb.Message) (*http.Request, error) {
	path, err := fillPath(route, msg)
	if err != nil {
		return nil, err
	}
	var body []byte
	switch route.Binding.Body {
	case "":
	case "*":
		rest := proto.Clone(msg).(*dynamicpb.Message)
		for _, fds := range route.pathFields {
			clearPath(rest, fds)
		}
		if body, err = b.marshal.Marshal(rest); err != nil {
			return nil, fmt.Errorf("request body: %v", err)
		}
	default:
		if body, err = b.marshalBodyField(msg, route.bodyField); err != nil {
			return nil, fmt.Errorf("request body %s: %v", route.Binding.Body, err)
		}
	}
	query := url.Values{}
	if route.Binding.Body != "*" {
		if err := b.addQuery(query, msg, "", "", route.bound, 0); err != nil {
			return nil, err
		}
	}
	host := b.opts.Host
	if host == "" {
		host = r.Host
	}
	h := make(http.Header, 4+len(b.reqMD))
	for _, k := range b.reqMD {
		if vs := r.Header[k]; len(vs) > 0 {
			h[k] = vs
		}
	}
	h["Accept"] = []string{"application/json"}
	escaped := b.opts.PathPrefix + path
	unescaped, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, fmt.Errorf("path %q: %v", escaped, err)
	}
	out := &http.Request{
		Method:     route.Binding.Method,
		URL:        &url.URL{Scheme: "http", Host: host, Path: unescaped, RawPath: escaped, RawQuery: query.Encode()},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       host,
		RemoteAddr: r.RemoteAddr,
		TLS:        r.TLS,
	}
	if body != nil {
		h["Content-Type"] = []string{"application/json"}
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		out.ContentLength = int64(len(body))
	}
	return out.WithContext(ctx), nil
}

// fillPath writes the template with each variable's field value: one segment
// percent-encoded whole (a "/" in it too), several segments encoded one by one
// and checked against the variable's pattern, so that a name that does not have
// the template's shape is refused rather than sent to another resource.
func fillPath(route *Route, msg protoreflect.Message) (string, error) {
	t := route.Binding.Template
	var b strings.Builder
	seg := 0
	for vi, v := range t.Variables {
		for ; seg < v.Start; seg++ {
			b.WriteByte('/')
			b.WriteString(url.PathEscape(t.Segments[seg].Text))
		}
		fds := route.pathFields[vi]
		value, err := pathFieldText(msg, fds)
		if err != nil {
			return "", fmt.Errorf("path variable {%s}: %v", v.Field(), err)
		}
		pattern := t.Segments[v.Start:v.End]
		if len(pattern) == 1 && pattern[0].Kind == httprule.Wildcard {
			if value == "" {
				return "", fmt.Errorf("path variable {%s}: the field is empty", v.Field())
			}
			b.WriteByte('/')
			b.WriteString(url.PathEscape(value))
		} else {
			parts := strings.Split(value, "/")
			if !matchesPattern(pattern, parts) {
				return "", fmt.Errorf("path variable {%s}: %q does not have the form %s", v.Field(), value, patternString(pattern))
			}
			for _, p := range parts {
				b.WriteByte('/')
				b.WriteString(url.PathEscape(p))
			}
		}
		seg = v.End
	}
	for ; seg < len(t.Segments); seg++ {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(t.Segments[seg].Text))
	}
	if t.Verb != "" {
		b.WriteByte(':')
		b.WriteString(url.PathEscape(t.Verb))
	}
	return b.String(), nil
}

// matchesPattern reports whether the segments of a value fit a variable's
// pattern: literals equal, "*" one non-empty segment, "**" the rest.
func matchesPattern(pattern []httprule.Segment, parts []string) bool {
	for i, s := range pattern {
		if s.Kind == httprule.DeepWildcard {
			return len(parts) > i
		}
		if i >= len(parts) || parts[i] == "" {
			return false
		}
		if s.Kind == httprule.Literal && parts[i] != s.Text {
			return false
		}
	}
	return len(parts) == len(pattern)
}

func patternString(pattern []httprule.Segment) string {
	out := make([]string, len(pattern))
	for i, s := range pattern {
		switch s.Kind {
		case httprule.Wildcard:
			out[i] = "*"
		case httprule.DeepWildcard:
			out[i] = "**"
		default:
			out[i] = s.Text
		}
	}
	return strings.Join(out, "/")
}

// pathFieldText is the text of the field at fds of msg.
func pathFieldText(msg protoreflect.Message, fds []protoreflect.FieldDescriptor) (string, error) {
	for _, fd := range fds[:len(fds)-1] {
		msg = msg.Get(fd).Message()
	}
	leaf := fds[len(fds)-1]
	return formatValue(leaf, msg.Get(leaf))
}

// formatValue writes a scalar (or a well-known type with a text form) as a
// path segment or query parameter value: the inverse of parseValue.
func formatValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) (string, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return v.String(), nil
	case protoreflect.BoolKind:
		return strconv.FormatBool(v.Bool()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.FormatInt(v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.FormatUint(v.Uint(), 10), nil
	case protoreflect.FloatKind:
		return strconv.FormatFloat(v.Float(), 'g', -1, 32), nil
	case protoreflect.DoubleKind:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64), nil
	case protoreflect.BytesKind:
		return base64.URLEncoding.EncodeToString(v.Bytes()), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name()), nil
		}
		return strconv.FormatInt(int64(v.Enum()), 10), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if !queryableWKT(fd.Message().FullName()) {
			return "", fmt.Errorf("a %s has no text form", fd.Message().FullName())
		}
		if fd.Message().FullName() == "google.protobuf.FieldMask" {
			// Proto names, as the mask holds them: grpc-gateway takes a mask's
			// paths as written, and the JSON form would camel-case them.
			m := v.Message()
			l := m.Get(m.Descriptor().Fields().ByName("paths")).List()
			paths := make([]string, l.Len())
			for i := range paths {
				paths[i] = l.Get(i).String()
			}
			return strings.Join(paths, ","), nil
		}
		js, err := protojson.Marshal(v.Message().Interface())
		if err != nil {
			return "", err
		}
		var text any
		if err := json.Unmarshal(js, &text); err != nil {
			return "", err
		}
		if s, ok := text.(string); ok {
			return s, nil
		}
		return string(js), nil // numbers and booleans of the wrappers
	}
	return "", fmt.Errorf("fields of kind %v have no text form", fd.Kind())
}

// addQuery adds the populated fields of msg not under a bound path, as
// "a.b=v" (repeated fields once per value, map entries "m[key]=v"). The names
// are JSON names, or proto names with UseProtoNames; the bound paths are proto
// names.
func (b *Bridge) addQuery(q url.Values, msg protoreflect.Message, prefix, protoPrefix string, bound []string, depth int) error {
	if depth > 32 {
		return errors.New("query parameters: message nested too deep")
	}
	var err error
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		protoPath := protoPrefix + string(fd.Name())
		if isBound(protoPath, bound) {
			return true
		}
		name := prefix + fd.JSONName()
		if b.opts.UseProtoNames {
			name = prefix + string(fd.Name())
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil && !queryableWKT(fd.MapValue().Message().FullName()) {
				err = fmt.Errorf("field %s: a map of messages cannot be sent as query parameters", protoPath)
				return false
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				var s string
				if s, err = formatValue(fd.MapValue(), mv); err != nil {
					return false
				}
				q.Add(name+"["+k.String()+"]", s)
				return true
			})
		case fd.IsList():
			if fd.Message() != nil && !queryableWKT(fd.Message().FullName()) {
				err = fmt.Errorf("field %s: a repeated message cannot be sent as query parameters", protoPath)
				return false
			}
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				var s string
				if s, err = formatValue(fd, l.Get(i)); err == nil {
					q.Add(name, s)
				}
			}
		case fd.Message() != nil && !queryableWKT(fd.Message().FullName()):
			err = b.addQuery(q, v.Message(), name+".", protoPath+".", bound, depth+1)
		default:
			var s string
			if s, err = formatValue(fd, v); err == nil {
				q.Add(name, s)
			}
		}
		return err == nil
	})
	return err
}

// marshalBodyField writes the value of the body field as JSON.
func (b *Bridge) marshalBodyField(msg protoreflect.Message, fds []protoreflect.FieldDescriptor) ([]byte, error) {
	t := &Transcoder{marshal: b.marshal}
	t.marshal.EmitUnpopulated = false
	return t.marshalField(msg, fds)
}

// clearPath clears the field at fds of msg, when the messages on the way exist.
func clearPath(msg protoreflect.Message, fds []protoreflect.FieldDescriptor) {
	for _, fd := range fds[:len(fds)-1] {
		if !msg.Has(fd) {
			return
		}
		msg = msg.Mutable(fd).Message()
	}
	msg.Clear(fds[len(fds)-1])
}

// decodeResponse turns the REST body into the response message: the whole
// message, or the response_body field's value. An empty body is an empty
// message (a 204, or a DELETE answering nothing).
func (b *Bridge) decodeResponse(route *Route, body []byte) ([]byte, error) {
	out := dynamicpb.NewMessage(route.Method.Output())
	if len(bytes.TrimSpace(body)) > 0 {
		if route.responseField == nil {
			if err := b.unmarsh.Unmarshal(body, out); err != nil {
				return nil, fmt.Errorf("the REST response is not JSON of %s: %s", out.Descriptor().FullName(), jsonError(err))
			}
		} else {
			t := &Transcoder{unmarsh: b.unmarsh}
			r := &Route{bodyField: route.responseField, Binding: &httprule.Binding{Body: route.Binding.ResponseBody}}
			if err := t.decodeBody(r, out, body); err != nil {
				return nil, fmt.Errorf("the REST response is not JSON of %s: %v", route.Binding.ResponseBody, err)
			}
		}
	}
	return proto.MarshalOptions{}.Marshal(out)
}

func encodeBin(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
