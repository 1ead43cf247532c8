package translate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/grpctimeout"

	"google.golang.org/genproto/googleapis/api/annotations"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/portcullis/portcullis/translate/descriptors"
	"github.com/portcullis/portcullis/translate/httprule"
)

// BridgeOptions are the choices of a Bridge. Every field documents its zero value.
type BridgeOptions struct {
	// UseProtoNames names fields by their proto names (book_id) in request
	// bodies and query parameters. Zero: lowerCamelCase (bookId), protojson's
	// default. Responses are read in either spelling.
	UseProtoNames bool
	// RejectUnknownFields fails a call (INTERNAL) whose REST response has a
	// field the response message does not. Zero: such fields are dropped, as
	// external APIs add fields without notice.
	RejectUnknownFields bool
	// MaxRequestMessage bounds the gRPC request message. Zero: 4 MiB.
	MaxRequestMessage int
	// MaxResponseBytes bounds the REST response body. Zero: 4 MiB.
	MaxResponseBytes int
	// PathPrefix is put before every path built from a template ("/api").
	// Zero: none.
	PathPrefix string
	// Host is the Host of the REST requests. Zero: the gRPC request's authority.
	Host string
	// RequestMetadata are gRPC metadata keys sent as HTTP request headers of
	// the same name. Zero: none.
	RequestMetadata []string
	// ResponseHeaders are REST response headers returned as gRPC response
	// metadata (lower-cased). Zero: none.
	ResponseHeaders []string
	// Timeout bounds a call when the client sends no grpc-timeout, and is the
	// most one may ask for. Zero: the client's grpc-timeout alone.
	Timeout time.Duration
	// Resolver finds the types of google.protobuf.Any values. Zero: the types
	// linked into the binary.
	Resolver Resolver
}

const defaultBridgeLimit = 4 << 20

// Bridge serves gRPC methods by calling a REST/JSON API: the reverse of a
// Transcoder, with the same google.api.http rules. Per call it decodes the
// request message, builds the HTTP request from the method's rule (path
// template filled from fields, the body per the rule, the other fields as query
// parameters), sends it through an Invoker, and answers the gRPC client with
// the JSON response as the response message, or the HTTP status as a gRPC code
// (CodeFromREST). Immutable and safe for concurrent use.
type Bridge struct {
	methods map[string]*Route // by gRPC path, "/pkg.Service/Method"
	skipped []string
	opts    BridgeOptions
	marshal protojson.MarshalOptions
	unmarsh protojson.UnmarshalOptions
	reqMD   []string // canonical header names
	respHdr []string // canonical header names
}

// NewBridge compiles the services' unary methods that have a rule (rules
// replace annotations, as in New). A method's first binding is the one called;
// its additional_bindings are ignored. Streaming methods are left out (Skipped
// names them): a REST call has one request and one response.
func NewBridge(services []protoreflect.ServiceDescriptor, rules map[string]*annotations.HttpRule, opts BridgeOptions) (*Bridge, error) {
	if opts.MaxRequestMessage <= 0 {
		opts.MaxRequestMessage = defaultBridgeLimit
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = defaultBridgeLimit
	}
	if opts.Resolver == nil {
		opts.Resolver = protoregistry.GlobalTypes
	}
	opts.PathPrefix = strings.TrimSuffix(opts.PathPrefix, "/")
	b := &Bridge{methods: map[string]*Route{}, opts: opts}
	var errs []error
	used := map[string]bool{}
	for _, sd := range services {
		for i := 0; i < sd.Methods().Len(); i++ {
			md := sd.Methods().Get(i)
			sel := string(md.FullName())
			rule, fromFile := rules[sel]
			used[sel] = fromFile
			if !fromFile {
				rule = descriptors.HTTPRule(md)
			}
			if rule == nil {
				continue
			}
			if md.IsStreamingClient() || md.IsStreamingServer() {
				b.skipped = append(b.skipped, sel+": a streaming method cannot be served by one REST call")
				continue
			}
			bs, err := httprule.FromRule(sel, rule)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			r, err := compileRoute(md, bs[0])
			if err == nil {
				err = fillable(bs[0])
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			b.methods[r.RPCPath] = r
		}
	}
	for sel := range rules {
		if !used[sel] {
			errs = append(errs, fmt.Errorf("rule for %s: no such method in the services", sel))
		}
	}
	if len(errs) == 0 && len(b.methods) == 0 {
		errs = append(errs, errors.New("no method of the services has an HTTP rule (annotate with google.api.http or give a rule file)"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	b.marshal = protojson.MarshalOptions{UseProtoNames: opts.UseProtoNames, Resolver: opts.Resolver}
	b.unmarsh = protojson.UnmarshalOptions{DiscardUnknown: !opts.RejectUnknownFields, Resolver: opts.Resolver}
	for _, k := range opts.RequestMetadata {
		b.reqMD = append(b.reqMD, canonicalHeader(k))
	}
	for _, k := range opts.ResponseHeaders {
		b.respHdr = append(b.respHdr, canonicalHeader(k))
	}
	return b, nil
}

// fillable refuses templates a request message cannot fill: a wildcard
// outside any variable has no field to take its value from.
func fillable(b *httprule.Binding) error {
	inVar := make([]bool, len(b.Template.Segments))
	for _, v := range b.Template.Variables {
		for i := v.Start; i < v.End; i++ {
			inVar[i] = true
		}
	}
	for i, s := range b.Template.Segments {
		if s.Kind != httprule.Literal && !inVar[i] {
			return fmt.Errorf("%s: a wildcard outside a variable cannot be filled from the request", b)
		}
	}
	return nil
}

// Skipped lists the methods with a rule that are not bridged, with why.
func (b *Bridge) Skipped() []string { return slices.Clone(b.skipped) }

// Methods lists the gRPC paths the bridge serves.
func (b *Bridge) Methods() []string {
	out := make([]string, 0, len(b.methods))
	for p := range b.methods {
		out = append(out, p)
	}
	return out
}

// Serve answers the gRPC request r (content type application/grpc) by calling
// the REST API through inv, and writes the gRPC response, errors included.
func (b *Bridge) Serve(w http.ResponseWriter, r *http.Request, inv Invoker) Outcome {
	route := b.methods[r.URL.Path]
	if route == nil {
		return writeGRPCStatus(w, nil, &spb.Status{Code: int32(codes.Unimplemented), Message: "method " + r.URL.Path + " is not bridged to a REST API"}, "no_binding")
	}
	if enc := r.Header.Get("Grpc-Encoding"); enc != "" && enc != "identity" {
		w.Header().Set("Grpc-Accept-Encoding", "identity")
		return writeGRPCStatus(w, nil, &spb.Status{Code: int32(codes.Unimplemented), Message: "grpc-encoding " + enc + " is not supported"}, "bad_request")
	}
	raw, st := b.readRequest(r)
	if st != nil {
		return writeGRPCStatus(w, nil, st, "bad_request")
	}
	msg := dynamicpb.NewMessage(route.Method.Input())
	if err := (proto.UnmarshalOptions{Resolver: b.opts.Resolver}).Unmarshal(raw, msg); err != nil {
		return writeGRPCStatus(w, nil, &spb.Status{Code: int32(codes.Internal), Message: "the request does not decode as " + string(route.Method.Input().FullName())}, "bad_request")
	}
	ctx := r.Context()
	timeout := b.opts.Timeout
	if v := r.Header.Get("Grpc-Timeout"); v != "" {
		if d, ok := grpctimeout.Parse(v); ok && (timeout == 0 || d < timeout) {
			timeout = d
		}
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	out, err := b.restRequest(ctx, r, route, msg)
	if err != nil {
		return writeGRPCStatus(w, nil, &spb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}, "bad_request")
	}
	resp := &restCapture{header: http.Header{}, max: b.opts.MaxResponseBytes}
	callErr := inv.ServeHTTP(resp, out)
	md := b.responseMetadata(resp.header)
	switch {
	case ctx.Err() == context.DeadlineExceeded && r.Context().Err() == nil:
		return writeGRPCStatus(w, md, &spb.Status{Code: int32(codes.DeadlineExceeded), Message: "the REST API did not answer in time"}, "upstream_timeout")
	case resp.overflow:
		return writeGRPCStatus(w, md, &spb.Status{Code: int32(codes.ResourceExhausted), Message: fmt.Sprintf("the REST response is larger than %d bytes", b.opts.MaxResponseBytes)}, "bad_response")
	case callErr != nil && resp.status == 0:
		st := &spb.Status{Code: int32(codes.Unavailable), Message: "the REST API could not be reached"}
		if s, ok := status.FromError(callErr); ok {
			st = s.Proto()
		}
		return writeGRPCStatus(w, md, st, "upstream_failed")
	case callErr != nil:
		return writeGRPCStatus(w, md, &spb.Status{Code: int32(codes.Unavailable), Message: "the REST response broke off"}, "upstream_failed")
	case resp.status < 200 || resp.status > 299:
		return writeGRPCStatus(w, md, b.restError(resp), "")
	}
	reply, err := b.decodeResponse(route, resp.body)
	if err != nil {
		return writeGRPCStatus(w, md, &spb.Status{Code: int32(codes.Internal), Message: err.Error()}, "bad_response")
	}
	return writeGRPCStatus(w, md, &spb.Status{}, "", reply)
}

// readRequest reads the one message of a unary gRPC request.
func (b *Bridge) readRequest(r *http.Request) ([]byte, *spb.Status) {
	if r.Body == nil {
		return nil, &spb.Status{Code: int32(codes.Internal), Message: "no request message"}
	}
	limit := int64(b.opts.MaxRequestMessage) + 5
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	switch {
	case err != nil:
		return nil, &spb.Status{Code: int32(codes.Canceled), Message: "reading the request: " + err.Error()}
	case int64(len(body)) > limit:
		return nil, &spb.Status{Code: int32(codes.ResourceExhausted), Message: fmt.Sprintf("the request message is larger than %d bytes", b.opts.MaxRequestMessage)}
	case len(body) < 5:
		return nil, &spb.Status{Code: int32(codes.Internal), Message: "no request message"}
	case body[0] != 0:
		return nil, &spb.Status{Code: int32(codes.Unimplemented), Message: "compressed messages are not supported"}
	}
	n := binary.BigEndian.Uint32(body[1:5])
	if uint64(n) != uint64(len(body)-5) {
		return nil, &spb.Status{Code: int32(codes.Internal), Message: "a unary call takes exactly one request message"}
	}
	return body[5:], nil
}

// responseMetadata picks the allow-listed REST response headers.
func (b *Bridge) responseMetadata(h http.Header) http.Header {
	if len(b.respHdr) == 0 {
		return nil
	}
	md := http.Header{}
	for _, k := range b.respHdr {
		if vs := h[k]; len(vs) > 0 {
			md[k] = vs
		}
	}
	return md
}

// restCapture keeps the REST response, up to max bytes of body.
type restCapture struct {
	header   http.Header
	status   int
	body     []byte
	max      int
	overflow bool
}

var _ http.ResponseWriter = (*restCapture)(nil)

func (c *restCapture) Header() http.Header { return c.header }

func (c *restCapture) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
}

func (c *restCapture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if len(c.body)+len(p) > c.max {
		c.overflow = true
		return 0, errors.New("REST response too large")
	}
	c.body = append(c.body, p...)
	return len(p), nil
}

// writeGRPCStatus answers the gRPC call: the response headers (md), the
// message when there is one, and the status as trailers. Headers and trailers
// go even for an error (not a trailers-only answer), which every gRPC client
// reads the same way whatever the HTTP/2 server does with an empty body.
func writeGRPCStatus(w http.ResponseWriter, md http.Header, st *spb.Status, reason string, reply ...[]byte) Outcome {
	h := w.Header()
	for k, vs := range md {
		h[k] = vs
	}
	h.Set("Content-Type", "application/grpc")
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	if len(reply) == 1 {
		frame := binary.BigEndian.AppendUint32(make([]byte, 1, 5+len(reply[0])), uint32(len(reply[0])))
		w.Write(append(frame, reply[0]...))
	}
	h[http.TrailerPrefix+"Grpc-Status"] = []string{fmt.Sprint(st.GetCode())}
	if st.GetMessage() != "" {
		h[http.TrailerPrefix+"Grpc-Message"] = []string{EncodeGRPCMessage(st.GetMessage())}
	}
	if len(st.GetDetails()) > 0 {
		if b, err := proto.Marshal(st); err == nil {
			h[http.TrailerPrefix+"Grpc-Status-Details-Bin"] = []string{encodeBin(b)}
		}
	}
	return Outcome{Code: codes.Code(st.GetCode()), Reason: reason}
}
