// Package translate turns REST/JSON requests into gRPC calls and their answers back
// into JSON, following the google.api.http rules of the exposed services
// (SM-DR3: the ingress speaks the client's protocol, the service keeps gRPC),
// and, in the other direction, serves gRPC methods by calling REST APIs with the
// same rules (Bridge, for the egress).
//
// A Transcoder is compiled once from service descriptors and rules: every binding
// is checked against its messages (path variables, body and response_body name
// existing, non-repeated fields) and put in one matcher. Per request it
//
//   - matches method and path to a binding (translate/httprule),
//   - builds the request message: the body (all of it, or one field), then the
//     path variables, then the query parameters for fields neither of those set;
//     for a client-streaming method, every line of a newline-delimited JSON body
//     is one message,
//   - sends it as a gRPC call through an Invoker (the gateway's upstream handler,
//     so load balancing, health and circuit breakers apply),
//   - writes the response as JSON (or, for server streams, newline-delimited JSON
//     or Server-Sent Events), and a gRPC error as a google.rpc.Status JSON body with
//     the HTTP status of one table (HTTPStatus).
//
// Evolve recompiles a Transcoder for new descriptors (fetched by server
// reflection) with a documented policy for breaking changes. A Bridge is the
// reverse: a gRPC request in, the REST request its rule describes out, the JSON
// answer back as the response message, an HTTP status as a gRPC code
// (CodeFromREST).
//
// Its JSON follows grpc-gateway v2's defaults, so that clients of either see the
// same bodies; the differences are deliberate and listed in docs/translate.md.
//
// It is not for gRPC-Web (translate/grpcweb), nor for fetching descriptors
// (translate/descriptors).
package translate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/portcullis/portcullis/translate/descriptors"
	"github.com/portcullis/portcullis/translate/httprule"
)

// Options are the transcoder's choices. Every field documents its zero value.
type Options struct {
	// UseProtoNames writes response fields under their proto names (book_id)
	// instead of lowerCamelCase (bookId). Zero: lowerCamelCase, as grpc-gateway.
	// Requests accept both spellings either way.
	UseProtoNames bool
	// OmitUnpopulated leaves fields at their default value out of responses.
	// Zero: they are written (0, "", [], {}), as grpc-gateway does by default.
	OmitUnpopulated bool
	// UseEnumNumbers writes enums as numbers. Zero: as their names.
	UseEnumNumbers bool
	// DiscardUnknown ignores JSON body fields the message does not have. Zero:
	// such a field is refused with 400 naming it (grpc-gateway discards them).
	DiscardUnknown bool
	// MaxBodyBytes bounds a request body. Zero: DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// RequestHeaders are request headers passed to the service as gRPC metadata
	// under their lower-cased names. Zero: none.
	RequestHeaders []string
	// GRPCMetadataHeaders passes every "Grpc-Metadata-<key>" request header as
	// metadata <key> (grpc-gateway's convention). Zero: off, since it lets a
	// client set any metadata the service reads.
	GRPCMetadataHeaders bool
	// ResponseMetadata are the metadata keys of the service's response headers
	// and trailers passed back, as "Grpc-Metadata-<key>" headers and, when the
	// client sent "TE: trailers", "Grpc-Trailer-<key>" trailers. Zero: none.
	ResponseMetadata []string
	// Timeout is the deadline of a call when the client sends no Grpc-Timeout
	// header, and the most a client's Grpc-Timeout may ask for. Zero: no
	// deadline of its own (the upstream's route timeout still applies).
	Timeout time.Duration
	// Resolver finds the message types of google.protobuf.Any values (and of
	// error details). Zero: the types linked into the binary
	// (descriptors.Set.Resolver adds those of loaded files).
	Resolver Resolver
}

// DefaultMaxBodyBytes is the request-body limit when Options.MaxBodyBytes is zero.
const DefaultMaxBodyBytes = 4 << 20

// Resolver finds message and extension types by name (protoregistry.Types,
// dynamicpb.Types); protojson uses it for google.protobuf.Any.
type Resolver interface {
	protoregistry.ExtensionTypeResolver
	protoregistry.MessageTypeResolver
}

// Transcoder is compiled from services and rules; immutable and safe for
// concurrent use.
type Transcoder struct {
	matcher *httprule.Matcher
	routes  map[*httprule.Binding]*Route
	opts    Options
	marshal protojson.MarshalOptions
	unmarsh protojson.UnmarshalOptions
	reqMD   map[string]string // canonical header -> metadata key
	respMD  map[string]bool   // metadata key
}

// Route is one binding compiled against its method: what a matched request
// becomes.
type Route struct {
	Binding *httprule.Binding
	Method  protoreflect.MethodDescriptor
	// RPCPath is the gRPC request path, "/pkg.Service/Method".
	RPCPath string
	// pathFields[i] is the field path of Template.Variables[i].
	pathFields [][]protoreflect.FieldDescriptor
	// bodyField is the body's field path (nil: none or "*").
	bodyField []protoreflect.FieldDescriptor
	// responseField is response_body's field path (nil: the whole message).
	responseField []protoreflect.FieldDescriptor
	// bound are the proto-name paths set by path variables or the body, which
	// query parameters may not set.
	bound []string
	// inferMask: a PATCH whose body is one field, with a top-level FieldMask
	// update_mask: an absent mask is derived from the body's keys.
	inferMask protoreflect.FieldDescriptor
}

// ServerStreaming reports whether the method streams its responses.
func (r *Route) ServerStreaming() bool { return r.Method.IsStreamingServer() }

// ClientStreaming reports whether the method takes a stream of requests (a body
// of newline-delimited JSON messages).
func (r *Route) ClientStreaming() bool { return r.Method.IsStreamingClient() }

// New compiles the services' methods. rules maps a method's full name to a rule
// that replaces its annotation; a method with neither is not exposed. Every
// problem is reported, joined, each naming the method and binding.
func New(services []protoreflect.ServiceDescriptor, rules map[string]*annotations.HttpRule, opts Options) (*Transcoder, error) {
	c := compileServices(services, rules)
	errs := c.errs
	if len(errs) == 0 && len(c.order) == 0 {
		errs = append(errs, errors.New("no method of the exposed services has an HTTP rule (annotate with google.api.http or give a rule file)"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return newTranscoder(c.order, opts)
}

// compiled is every binding of a set of services, compiled against their
// descriptors, and every problem found.
type compiled struct {
	order   []*Route                                 // in declaration order
	byKey   map[string]*Route                        // by Binding.String()
	methods map[string]protoreflect.MethodDescriptor // every method of the services
	failed  map[string]error                         // bindings that parse but do not compile, by key
	other   []error                                  // rules that do not parse or name no method
	errs    []error                                  // every problem, in order
}

func compileServices(services []protoreflect.ServiceDescriptor, rules map[string]*annotations.HttpRule) compiled {
	c := compiled{byKey: map[string]*Route{}, methods: map[string]protoreflect.MethodDescriptor{}, failed: map[string]error{}}
	used := map[string]bool{}
	for _, sd := range services {
		for i := 0; i < sd.Methods().Len(); i++ {
			md := sd.Methods().Get(i)
			sel := string(md.FullName())
			c.methods[sel] = md
			rule, fromFile := rules[sel]
			used[sel] = fromFile
			if !fromFile {
				rule = descriptors.HTTPRule(md)
			}
			if rule == nil {
				continue
			}
			bs, err := httprule.FromRule(sel, rule)
			if err != nil {
				c.errs, c.other = append(c.errs, err), append(c.other, err)
				continue
			}
			for _, b := range bs {
				r, err := compileRoute(md, b)
				if err != nil {
					c.errs = append(c.errs, err)
					c.failed[b.String()] = err
					continue
				}
				c.order = append(c.order, r)
				c.byKey[b.String()] = r
			}
		}
	}
	var unused []string
	for sel := range rules {
		if !used[sel] {
			unused = append(unused, sel)
		}
	}
	slices.Sort(unused)
	for _, sel := range unused {
		err := fmt.Errorf("rule for %s: no such method in the exposed services", sel)
		c.errs, c.other = append(c.errs, err), append(c.other, err)
	}
	return c
}

// newTranscoder builds the matcher of routes and the transcoder's codecs.
func newTranscoder(routes []*Route, opts Options) (*Transcoder, error) {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Resolver == nil {
		opts.Resolver = protoregistry.GlobalTypes
	}
	t := &Transcoder{routes: make(map[*httprule.Binding]*Route, len(routes)), opts: opts}
	bindings := make([]*httprule.Binding, len(routes))
	for i, r := range routes {
		bindings[i] = r.Binding
		t.routes[r.Binding] = r
	}
	m, err := httprule.Compile(bindings)
	if err != nil {
		return nil, err
	}
	t.matcher = m
	t.marshal = protojson.MarshalOptions{
		AllowPartial:    true, // see encodeResponse
		UseProtoNames:   opts.UseProtoNames,
		EmitUnpopulated: !opts.OmitUnpopulated,
		UseEnumNumbers:  opts.UseEnumNumbers,
		Resolver:        opts.Resolver,
	}
	t.unmarsh = protojson.UnmarshalOptions{DiscardUnknown: opts.DiscardUnknown, Resolver: opts.Resolver}
	t.reqMD = map[string]string{}
	for _, h := range opts.RequestHeaders {
		t.reqMD[canonicalHeader(h)] = strings.ToLower(h)
	}
	t.respMD = map[string]bool{}
	for _, k := range opts.ResponseMetadata {
		t.respMD[strings.ToLower(k)] = true
	}
	return t, nil
}

func compileRoute(md protoreflect.MethodDescriptor, b *httprule.Binding) (*Route, error) {
	r := &Route{
		Binding: b,
		Method:  md,
		RPCPath: "/" + string(md.Parent().FullName()) + "/" + string(md.Name()),
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s", b, fmt.Sprintf(format, args...))
	}
	switch {
	case md.IsStreamingClient() && md.IsStreamingServer():
		return nil, fail("bidirectional streaming methods cannot be transcoded (an HTTP/1.1 client sends its whole body before it reads)")
	case md.IsStreamingClient() && b.Body != "*":
		return nil, fail(`a client-streaming method takes newline-delimited request messages: its rule needs body: "*"`)
	}
	in, out := md.Input(), md.Output()
	for _, v := range b.Template.Variables {
		fds, err := resolveFieldPath(in, v.FieldPath)
		if err != nil {
			return nil, fail("path variable {%s}: %v", v.Field(), err)
		}
		leaf := fds[len(fds)-1]
		if leaf.IsList() || leaf.IsMap() {
			return nil, fail("path variable {%s}: a repeated field cannot be bound to the path", v.Field())
		}
		if leaf.Message() != nil && !queryableWKT(leaf.Message().FullName()) {
			return nil, fail("path variable {%s}: message field of type %s has no string form", v.Field(), leaf.Message().FullName())
		}
		r.pathFields = append(r.pathFields, fds)
		r.bound = append(r.bound, v.Field())
	}
	switch b.Body {
	case "", "*":
	default:
		fds, err := resolveFieldPath(in, strings.Split(b.Body, "."))
		if err != nil {
			return nil, fail("body %q: %v", b.Body, err)
		}
		r.bodyField = fds
		r.bound = append(r.bound, b.Body)
		mask := in.Fields().ByName("update_mask")
		if b.Method == "PATCH" && len(fds) == 1 && fds[0].Message() != nil && !fds[0].IsList() && !fds[0].IsMap() &&
			mask != nil && mask.Message() != nil && mask.Message().FullName() == "google.protobuf.FieldMask" && !mask.IsList() {
			r.inferMask = mask
		}
	}
	if b.ResponseBody != "" {
		fds, err := resolveFieldPath(out, strings.Split(b.ResponseBody, "."))
		if err != nil {
			return nil, fail("response_body %q: %v", b.ResponseBody, err)
		}
		r.responseField = fds
	}
	return r, nil
}

// resolveFieldPath walks proto field names from msg. Every field but the last
// must be a singular message.
func resolveFieldPath(msg protoreflect.MessageDescriptor, path []string) ([]protoreflect.FieldDescriptor, error) {
	out := make([]protoreflect.FieldDescriptor, 0, len(path))
	cur := msg
	for i, name := range path {
		if cur == nil {
			return nil, fmt.Errorf("%q is not a message field", strings.Join(path[:i], "."))
		}
		fd := cur.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return nil, fmt.Errorf("%s has no field %q", cur.FullName(), name)
		}
		if i < len(path)-1 && (fd.IsList() || fd.IsMap() || fd.Message() == nil) {
			return nil, fmt.Errorf("%q is not a singular message field", strings.Join(path[:i+1], "."))
		}
		out = append(out, fd)
		cur = fd.Message()
	}
	return out, nil
}

// Match finds the route of a request. escapedPath is url.URL.EscapedPath().
func (t *Transcoder) Match(method, escapedPath string) (*Route, []string, httprule.Result) {
	m, res := t.matcher.Match(method, escapedPath)
	if res != httprule.Found {
		return nil, nil, res
	}
	return t.routes[m.Binding], m.Values, httprule.Found
}

// Allowed lists the HTTP methods bound to escapedPath (for a 405's Allow header).
func (t *Transcoder) Allowed(escapedPath string) []string { return t.matcher.Allowed(escapedPath) }

// Routes lists the compiled routes, sorted by HTTP method and template.
func (t *Transcoder) Routes() []*Route {
	bs := t.matcher.Bindings()
	out := make([]*Route, len(bs))
	for i, b := range bs {
		out[i] = t.routes[b]
	}
	return out
}
