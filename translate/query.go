package translate

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxQueryParams bounds the work a query string can cause; url.ParseQuery itself
// does not bound the number of pairs.
const maxQueryParams = 1000

// QueryError is a query parameter that could not be applied; the client gets 400
// with its text.
type QueryError struct {
	Param  string
	Reason string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("query parameter %q: %s", e.Param, e.Reason)
}

// applyQuery sets the fields of msg named by the query parameters, following the
// google.api.http rules: a parameter names a field path ("author.display_name",
// or in lowerCamelCase "author.displayName"); repeated fields take every value
// ("tags=a&tags=b"); a map entry is written "labels[key]=value"; fields bound by
// the path or the body (skip) are left alone, and so are names that are no field
// (grpc-gateway ignores them too, and cache-busting parameters are common).
// Parameters are applied in sorted order, so errors are deterministic.
func applyQuery(msg protoreflect.Message, query string, skip []string) error {
	if query == "" {
		return nil
	}
	if n := strings.Count(query, "&") + 1; n > maxQueryParams {
		return &QueryError{Param: "", Reason: fmt.Sprintf("more than %d parameters", maxQueryParams)}
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return &QueryError{Param: "", Reason: "malformed query string: " + err.Error()}
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		if err := applyParam(msg, key, values[key], skip); err != nil {
			return err
		}
	}
	return nil
}

func applyParam(msg protoreflect.Message, key string, vals []string, skip []string) error {
	name, mapKey, isMapEntry := strings.Cut(key, "[")
	if isMapEntry {
		if !strings.HasSuffix(mapKey, "]") {
			return &QueryError{Param: key, Reason: "map entries are written name[key]=value"}
		}
		mapKey = mapKey[:len(mapKey)-1]
	}
	if name == "" {
		return nil
	}
	parts := strings.Split(name, ".")
	fds := make([]protoreflect.FieldDescriptor, 0, len(parts))
	protoNames := make([]string, 0, len(parts))
	md := msg.Descriptor()
	for i, p := range parts {
		if md == nil {
			return &QueryError{Param: key, Reason: fmt.Sprintf("%q is not a message field", strings.Join(parts[:i], "."))}
		}
		fd := md.Fields().ByName(protoreflect.Name(p))
		if fd == nil {
			fd = md.Fields().ByJSONName(p)
		}
		if fd == nil {
			return nil // not a field: ignored
		}
		if i < len(parts)-1 && (fd.IsList() || fd.IsMap() || fd.Message() == nil || queryableWKT(fd.Message().FullName())) {
			return &QueryError{Param: key, Reason: fmt.Sprintf("%q is not a message field", strings.Join(parts[:i+1], "."))}
		}
		fds = append(fds, fd)
		protoNames = append(protoNames, string(fd.Name()))
		md = fd.Message()
	}
	if isBound(strings.Join(protoNames, "."), skip) {
		return nil
	}
	// Walk to the parent, checking oneofs on the way: a parameter must not
	// switch a oneof another part of the request already chose.
	parent := msg
	for i, fd := range fds {
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if set := parent.WhichOneof(od); set != nil && set != fd {
				return &QueryError{Param: key, Reason: fmt.Sprintf("oneof %s already has %s set", od.Name(), set.Name())}
			}
		}
		if i < len(fds)-1 {
			parent = parent.Mutable(fd).Message()
		}
	}
	leaf := fds[len(fds)-1]
	switch {
	case leaf.IsMap():
		if !isMapEntry {
			return &QueryError{Param: key, Reason: "a map field is set with name[key]=value"}
		}
		if len(vals) != 1 {
			return &QueryError{Param: key, Reason: "a map entry takes one value"}
		}
		k, err := parseValue(leaf.MapKey(), mapKey)
		if err != nil {
			return &QueryError{Param: key, Reason: "key: " + err.Error()}
		}
		v, err := parseValue(leaf.MapValue(), vals[0])
		if err != nil {
			return &QueryError{Param: key, Reason: err.Error()}
		}
		parent.Mutable(leaf).Map().Set(k.MapKey(), v)
	case isMapEntry:
		return &QueryError{Param: key, Reason: "not a map field"}
	case leaf.IsList():
		list := parent.Mutable(leaf).List()
		for _, s := range vals {
			v, err := parseValue(leaf, s)
			if err != nil {
				return &QueryError{Param: key, Reason: err.Error()}
			}
			list.Append(v)
		}
	default:
		if len(vals) > 1 {
			return &QueryError{Param: key, Reason: fmt.Sprintf("%d values for a field that takes one", len(vals))}
		}
		if leaf.Message() != nil && !queryableWKT(leaf.Message().FullName()) {
			return &QueryError{Param: key, Reason: fmt.Sprintf("a %s cannot be set from a query parameter; set its fields (%s.<field>)", leaf.Message().FullName(), name)}
		}
		v, err := parseValue(leaf, vals[0])
		if err != nil {
			return &QueryError{Param: key, Reason: err.Error()}
		}
		parent.Set(leaf, v)
	}
	return nil
}

// isBound reports whether path is, or lies under, one of the bound paths.
func isBound(path string, bound []string) bool {
	for _, b := range bound {
		if b == "*" || path == b || strings.HasPrefix(path, b+".") {
			return true
		}
	}
	return false
}
