package translate

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Change is what new descriptors did to the bindings of a transcoder. Each
// entry names a binding ("GET /v1/{name=books/*} (pkg.Svc.GetBook)") and, for
// all but Added, why.
type Change struct {
	// Added are bindings the previous descriptors did not have.
	Added []string
	// Removed are bindings dropped: their method is gone from the service, or
	// its rule no longer has them.
	Removed []string
	// Retained are bindings the new descriptors break while their method still
	// exists (a field of the path template, the body or response_body removed
	// or retyped): they keep serving as compiled from the previous
	// descriptors, so that clients of the URL are not cut off by one refresh.
	Retained []string
	// Failed are bindings of the new descriptors that do not compile and had
	// no previous form to keep, and rules that name no method. They are left
	// out.
	Failed []string
}

// Breaking reports a change that removed bindings or had to retain old ones:
// clients of the REST API see a difference.
func (c Change) Breaking() bool { return len(c.Removed) > 0 || len(c.Retained) > 0 }

// Empty reports a change that changed no binding.
func (c Change) Empty() bool {
	return len(c.Added)+len(c.Removed)+len(c.Retained)+len(c.Failed) == 0
}

// Evolve compiles services and rules into a transcoder that replaces prev (nil
// for the first), for descriptors the operator does not hold in hand (fetched by
// server reflection), following one policy:
//
//   - a binding that compiles is taken from the new descriptors, unless a field
//     it binds (path variable, body, response_body) changed number, kind,
//     cardinality or type since prev: then prev's binding is retained;
//   - a binding of prev that the new descriptors no longer compile, while its
//     method still exists, is retained as prev compiled it;
//   - a binding of prev whose method is gone, or that the method's rule no
//     longer lists, is removed: the service no longer answers it;
//   - a new binding that does not compile is reported in Failed and left out.
//
// A retained binding lives until its method goes or the transcoder is built
// anew (New, or Evolve with a nil prev). Evolve fails, and the caller keeps
// prev, when no binding is left or two bindings conflict. prev is not changed.
func Evolve(prev *Transcoder, services []protoreflect.ServiceDescriptor, rules map[string]*annotations.HttpRule, opts Options) (*Transcoder, Change, error) {
	c := compileServices(services, rules)
	var change Change
	before := map[string]*Route{}
	if prev != nil {
		for _, r := range prev.Routes() {
			before[r.Binding.String()] = r
		}
	}
	for key, err := range c.failed {
		if before[key] == nil {
			change.Failed = append(change.Failed, err.Error())
		}
	}
	for _, err := range c.other {
		change.Failed = append(change.Failed, err.Error())
	}
	routes := slices.Clone(c.order)
	if prev != nil {
		for _, old := range prev.Routes() {
			key := old.Binding.String()
			fresh, compiles := c.byKey[key]
			_, methodExists := c.methods[old.Binding.Selector]
			_, broken := c.failed[key]
			switch {
			case compiles:
				if why := incompatible(old, fresh); why != "" {
					routes = slices.DeleteFunc(routes, func(r *Route) bool { return r == fresh })
					routes = append(routes, old)
					change.Retained = append(change.Retained, key+": "+why)
				}
			case !methodExists:
				change.Removed = append(change.Removed, key+": the method is gone")
			case broken:
				routes = append(routes, old)
				change.Retained = append(change.Retained, key+": "+c.failed[key].Error())
			default:
				change.Removed = append(change.Removed, key+": the method's rule no longer has it")
			}
		}
		for _, r := range c.order {
			if before[r.Binding.String()] == nil {
				change.Added = append(change.Added, r.Binding.String())
			}
		}
	} else {
		for _, r := range c.order {
			change.Added = append(change.Added, r.Binding.String())
		}
	}
	for _, l := range [][]string{change.Added, change.Removed, change.Retained, change.Failed} {
		slices.Sort(l)
	}
	if len(routes) == 0 {
		return nil, change, errors.New("no method of the exposed services has an HTTP rule that compiles")
	}
	t, err := newTranscoder(routes, opts)
	if err != nil {
		return nil, change, err
	}
	return t, change, nil
}

// incompatible says how the fields a binding binds differ between two
// compilations of it, or "" when a request maps to the same wire message.
func incompatible(old, fresh *Route) string {
	for i := range old.pathFields {
		if why := fieldPathDiff(old.pathFields[i], fresh.pathFields[i]); why != "" {
			return "path variable {" + old.Binding.Template.Variables[i].Field() + "}: " + why
		}
	}
	if why := fieldPathDiff(old.bodyField, fresh.bodyField); why != "" {
		return "body " + old.Binding.Body + ": " + why
	}
	if why := fieldPathDiff(old.responseField, fresh.responseField); why != "" {
		return "response_body " + old.Binding.ResponseBody + ": " + why
	}
	return ""
}

func fieldPathDiff(a, b []protoreflect.FieldDescriptor) string {
	if len(a) != len(b) {
		return "the field path changed"
	}
	for i := range a {
		x, y := a[i], b[i]
		switch {
		case x.Number() != y.Number():
			return fmt.Sprintf("field %s was number %d, now %d", x.Name(), x.Number(), y.Number())
		case x.Kind() != y.Kind():
			return fmt.Sprintf("field %s was %v, now %v", x.Name(), x.Kind(), y.Kind())
		case x.Cardinality() != y.Cardinality() || x.IsMap() != y.IsMap():
			return fmt.Sprintf("field %s changed cardinality", x.Name())
		case x.Message() != nil && x.Message().FullName() != y.Message().FullName():
			return fmt.Sprintf("field %s was %s, now %s", x.Name(), x.Message().FullName(), y.Message().FullName())
		case x.Enum() != nil && x.Enum().FullName() != y.Enum().FullName():
			return fmt.Sprintf("field %s was %s, now %s", x.Name(), x.Enum().FullName(), y.Enum().FullName())
		}
	}
	return ""
}
