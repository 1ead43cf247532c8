package descriptors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Invoker sends one HTTP/2 gRPC request and writes the response to w: headers,
// body, then trailers as "Trailer:"-prefixed header keys. The gateway's upstream
// handler has this shape (translate.Invoker is the same contract), so reflection
// goes through the cluster's load balancing, health checks and breakers. An error
// means no usable response; a *status.Status error names the code.
type Invoker interface {
	ServeHTTP(w http.ResponseWriter, r *http.Request) error
}

// Paths of the server reflection method. v1alpha is asked only when v1 is
// unimplemented; its messages are the same on the wire.
const (
	reflectionV1      = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	reflectionV1Alpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

// Bounds of one fetch: what a service's descriptors can reasonably be.
const (
	maxReflectionBytes  = 64 << 20 // every response of a fetch together
	maxReflectionFiles  = 10000
	maxReflectionRounds = 16 // import levels asked for one by one
)

// FetchReflection asks a server's reflection service (grpc.reflection.v1, or
// v1alpha when v1 is unimplemented) for the files that define services, and for
// every file they import, transitively. Imports the server does not have are
// left out when the binary knows them (google/* files; FromFileDescriptorSet
// takes those from the binary). host is the :authority of the requests.
//
// A service the server does not know is an error naming it: a reflection
// answer without a configured service is not a change to apply.
func FetchReflection(ctx context.Context, inv Invoker, host string, services []string) (*descriptorpb.FileDescriptorSet, error) {
	if len(services) == 0 {
		return nil, errors.New("no services to ask for")
	}
	f := &fetch{inv: inv, host: host, path: reflectionV1, files: map[string][]byte{}}
	reqs := make([]*rpb.ServerReflectionRequest, len(services))
	for i, s := range services {
		reqs[i] = &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: s}}
	}
	for round := 0; len(reqs) > 0; round++ {
		if round == maxReflectionRounds {
			return nil, fmt.Errorf("imports still missing after %d rounds of reflection requests", maxReflectionRounds)
		}
		if err := f.round(ctx, reqs); err != nil {
			return nil, err
		}
		reqs = reqs[:0]
		for _, name := range f.missingImports() {
			reqs = append(reqs, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: name}})
		}
	}
	names := make([]string, 0, len(f.files))
	for n := range f.files {
		names = append(names, n)
	}
	slices.Sort(names)
	out := &descriptorpb.FileDescriptorSet{}
	for _, n := range names {
		var fdp descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(f.files[n], &fdp); err != nil {
			return nil, fmt.Errorf("reflection: file %s does not decode: %w", n, err)
		}
		out.File = append(out.File, &fdp)
	}
	return out, nil
}

// Digest is a hex SHA-256 of a descriptor set in a canonical form (files sorted
// by name, deterministic encoding): two fetches of unchanged services have the
// same digest, so a refresh that changed nothing is recognised and skipped.
func Digest(fds *descriptorpb.FileDescriptorSet) string {
	files := slices.Clone(fds.GetFile())
	slices.SortFunc(files, func(a, b *descriptorpb.FileDescriptorProto) int { return strings.Compare(a.GetName(), b.GetName()) })
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&descriptorpb.FileDescriptorSet{File: files})
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

type fetch struct {
	inv   Invoker
	host  string
	path  string
	files map[string][]byte // file name -> FileDescriptorProto bytes
	total int
}

// round sends reqs on one reflection stream (all of them, then the end of the
// stream) and reads one answer for each.
func (f *fetch) round(ctx context.Context, reqs []*rpb.ServerReflectionRequest) error {
	var body []byte
	for _, r := range reqs {
		r.Host = f.host
		b, err := proto.Marshal(r)
		if err != nil {
			return err
		}
		body = binary.BigEndian.AppendUint32(append(body, 0), uint32(len(b)))
		body = append(body, b...)
	}
	msgs, err := f.call(ctx, body)
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unimplemented && f.path == reflectionV1 {
		f.path = reflectionV1Alpha
		msgs, err = f.call(ctx, body)
	}
	if err != nil {
		return err
	}
	if len(msgs) != len(reqs) {
		return fmt.Errorf("reflection: %d answers to %d requests", len(msgs), len(reqs))
	}
	for i, m := range msgs {
		var resp rpb.ServerReflectionResponse
		if err := proto.Unmarshal(m, &resp); err != nil {
			return fmt.Errorf("reflection: answer %d does not decode: %w", i, err)
		}
		if e := resp.GetErrorResponse(); e != nil {
			return fmt.Errorf("reflection: %s: %s: %s", describe(reqs[i]), codes.Code(e.GetErrorCode()), e.GetErrorMessage())
		}
		fdr := resp.GetFileDescriptorResponse()
		if fdr == nil {
			return fmt.Errorf("reflection: %s: the answer holds no file descriptors", describe(reqs[i]))
		}
		for _, raw := range fdr.GetFileDescriptorProto() {
			var fdp descriptorpb.FileDescriptorProto
			if err := proto.Unmarshal(raw, &fdp); err != nil {
				return fmt.Errorf("reflection: %s: a file descriptor does not decode: %w", describe(reqs[i]), err)
			}
			if _, seen := f.files[fdp.GetName()]; !seen {
				if len(f.files) == maxReflectionFiles {
					return fmt.Errorf("reflection: more than %d files", maxReflectionFiles)
				}
				f.files[fdp.GetName()] = raw
			}
		}
	}
	return nil
}

func describe(r *rpb.ServerReflectionRequest) string {
	if s := r.GetFileContainingSymbol(); s != "" {
		return "service " + s
	}
	return "file " + r.GetFileByFilename()
}

// missingImports lists the imports of the fetched files that were not fetched
// and that the binary does not know either, sorted.
func (f *fetch) missingImports() []string {
	var out []string
	for _, raw := range f.files {
		var fdp descriptorpb.FileDescriptorProto
		if proto.Unmarshal(raw, &fdp) != nil {
			continue
		}
		for _, dep := range fdp.GetDependency() {
			if _, have := f.files[dep]; have || slices.Contains(out, dep) || builtin(dep) {
				continue
			}
			out = append(out, dep)
		}
	}
	slices.Sort(out)
	return out
}

// call sends one reflection stream and returns its messages, or the call's
// status as an error.
func (f *fetch) call(ctx context.Context, body []byte) ([][]byte, error) {
	req := &http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Scheme: "http", Host: f.host, Path: f.path},
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		ContentLength: int64(len(body)),
		Host:          f.host,
	}
	w := &bufferWriter{header: http.Header{}, limit: maxReflectionBytes - f.total}
	err := f.inv.ServeHTTP(w, req.WithContext(ctx))
	f.total += w.body.Len()
	switch {
	case w.overflow:
		return nil, fmt.Errorf("reflection: answers larger than %d bytes", maxReflectionBytes)
	case err != nil && w.status == 0:
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, fmt.Errorf("reflection: %w", err)
	case w.status != http.StatusOK:
		return nil, status.Errorf(codeFromHTTP(w.status), "reflection: the server answered HTTP %d", w.status)
	}
	get := func(k string) string {
		if v := w.header.Get(http.TrailerPrefix + k); v != "" {
			return v
		}
		return w.header.Get(k)
	}
	code, perr := strconv.Atoi(get("Grpc-Status"))
	switch {
	case perr != nil && err != nil:
		return nil, fmt.Errorf("reflection: the stream broke: %w", err)
	case perr != nil:
		return nil, errors.New("reflection: the server sent no grpc-status")
	case code != 0:
		msg, _ := url.PathUnescape(get("Grpc-Message"))
		return nil, status.Error(codes.Code(code), "reflection: "+msg)
	}
	return splitFrames(w.body.Bytes())
}

// codeFromHTTP is the gRPC protocol's mapping for a non-gRPC answer; 404 is a
// server without the reflection service.
func codeFromHTTP(s int) codes.Code {
	switch s {
	case http.StatusNotFound:
		return codes.Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codes.Unavailable
	}
	return codes.Unknown
}

func splitFrames(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 5 {
			return nil, errors.New("reflection: a message was cut short")
		}
		if b[0] != 0 {
			return nil, errors.New("reflection: a compressed message, though no compression was offered")
		}
		n := binary.BigEndian.Uint32(b[1:5])
		if uint64(len(b)-5) < uint64(n) {
			return nil, errors.New("reflection: a message was cut short")
		}
		out = append(out, b[5:5+n])
		b = b[5+n:]
	}
	return out, nil
}

// bufferWriter keeps a response whole, up to limit bytes of body.
type bufferWriter struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	limit    int
	overflow bool
}

var _ http.ResponseWriter = (*bufferWriter)(nil)

func (w *bufferWriter) Header() http.Header { return w.header }

func (w *bufferWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *bufferWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len()+len(p) > w.limit {
		w.overflow = true
		return 0, errors.New("reflection answer too large")
	}
	return w.body.Write(p)
}
