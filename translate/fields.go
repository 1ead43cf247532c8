package translate

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// queryableWKT reports the well-known message types that have a string form, and
// so can be written in a path variable or a query parameter.
func queryableWKT(name protoreflect.FullName) bool {
	switch name {
	case "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask",
		"google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		return true
	}
	return false
}

// parseValue turns the text of a path variable or query parameter into a value
// of field fd (a singular field, or an element of a list or map). Well-known
// message types take the string forms of their JSON mapping.
func parseValue(fd protoreflect.FieldDescriptor, s string) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BoolKind:
		v, err := strconv.ParseBool(s)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not a boolean", s)
		}
		return protoreflect.ValueOfBool(v), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		v, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not a 32-bit integer", s)
		}
		return protoreflect.ValueOfInt32(int32(v)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not a 64-bit integer", s)
		}
		return protoreflect.ValueOfInt64(v), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not an unsigned 32-bit integer", s)
		}
		return protoreflect.ValueOfUint32(uint32(v)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not an unsigned 64-bit integer", s)
		}
		return protoreflect.ValueOfUint64(v), nil
	case protoreflect.FloatKind:
		v, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not a number", s)
		}
		return protoreflect.ValueOfFloat32(float32(v)), nil
	case protoreflect.DoubleKind:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not a number", s)
		}
		return protoreflect.ValueOfFloat64(v), nil
	case protoreflect.BytesKind:
		b, err := decodeBase64(s)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not base64", s)
		}
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ev := ed.Values().ByName(protoreflect.Name(s)); ev != nil {
			return protoreflect.ValueOfEnum(ev.Number()), nil
		}
		if n, err := strconv.ParseInt(s, 10, 32); err == nil {
			if ev := ed.Values().ByNumber(protoreflect.EnumNumber(n)); ev != nil {
				return protoreflect.ValueOfEnum(ev.Number()), nil
			}
		}
		return protoreflect.Value{}, fmt.Errorf("%q is not a value of enum %s", s, ed.FullName())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return parseWKT(fd.Message(), s)
	}
	return protoreflect.Value{}, fmt.Errorf("fields of kind %v cannot be set from text", fd.Kind())
}

// parseWKT parses the string form of a well-known type through protojson, so the
// forms are exactly those of the JSON mapping. Two extensions, for what clients
// of grpc-gateway send: a Duration may also be a Go duration ("1m30s"), and a
// FieldMask path with an underscore is taken as a proto name, not lowerCamelCase.
func parseWKT(md protoreflect.MessageDescriptor, s string) (protoreflect.Value, error) {
	name := md.FullName()
	if !queryableWKT(name) {
		return protoreflect.Value{}, fmt.Errorf("message type %s has no text form", name)
	}
	msg := dynamicpb.NewMessage(md)
	var js string
	switch name {
	case "google.protobuf.BoolValue":
		if _, err := strconv.ParseBool(s); err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not a boolean", s)
		}
		b, _ := strconv.ParseBool(s)
		js = strconv.FormatBool(b)
	case "google.protobuf.FieldMask":
		return fieldMaskValue(md, s), nil
	default:
		js = strconv.Quote(s)
	}
	err := protojson.Unmarshal([]byte(js), msg)
	if err != nil && name == "google.protobuf.Duration" {
		if d, derr := time.ParseDuration(s); derr == nil {
			dp := durationpb.New(d)
			msg.Set(md.Fields().ByName("seconds"), protoreflect.ValueOfInt64(dp.Seconds))
			msg.Set(md.Fields().ByName("nanos"), protoreflect.ValueOfInt32(dp.Nanos))
			err = nil
		}
	}
	if err != nil {
		return protoreflect.Value{}, fmt.Errorf("%q is not a valid %s", s, name)
	}
	return protoreflect.ValueOfMessage(msg), nil
}

func fieldMaskValue(md protoreflect.MessageDescriptor, s string) protoreflect.Value {
	msg := dynamicpb.NewMessage(md)
	list := msg.Mutable(md.Fields().ByName("paths")).List()
	if s != "" {
		for _, p := range strings.Split(s, ",") {
			p = strings.TrimSpace(p)
			if !strings.Contains(p, "_") {
				p = snakeCase(p)
			}
			list.Append(protoreflect.ValueOfString(p))
		}
	}
	return protoreflect.ValueOfMessage(msg)
}

// snakeCase turns a lowerCamelCase path into proto names ("author.displayName"
// -> "author.display_name").
func snakeCase(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			b.WriteByte('_')
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// decodeBase64 accepts standard and URL-safe base64, padded or not, as the
// protobuf JSON mapping does for bytes.
func decodeBase64(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.DecodeString(s)
}

// setPath sets value v at the field path fds of msg, creating the messages on the
// way. The last field must be singular.
func setPath(msg protoreflect.Message, fds []protoreflect.FieldDescriptor, v protoreflect.Value) {
	for _, fd := range fds[:len(fds)-1] {
		msg = msg.Mutable(fd).Message()
	}
	msg.Set(fds[len(fds)-1], v)
}
