// Package descriptors loads the protobuf descriptors of the gRPC services the
// transcoder exposes: from .proto files compiled at run time, from a compiled
// FileDescriptorSet, and the google.api.http rules of a rule file for protos that
// carry no annotations.
//
// Imports of google/protobuf/* (well-known types), google/api/* (annotations) and
// google/rpc/* are always resolved from the descriptors linked into this binary,
// so no third-party .proto file needs to be on disk, and the descriptors match the
// Go types that protojson knows.
//
// It is not for matching requests (translate/httprule) or for converting messages
// (translate).
package descriptors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/reporter"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	// Registered for imports and for the types the transcoder marshals:
	// google/api/annotations.proto and http.proto, google/rpc/status.proto and
	// error_details.proto, and the well-known types.
	_ "google.golang.org/genproto/googleapis/api/annotations"
	_ "google.golang.org/genproto/googleapis/api/httpbody"
	_ "google.golang.org/genproto/googleapis/rpc/errdetails"
	_ "google.golang.org/genproto/googleapis/rpc/status"
	_ "google.golang.org/protobuf/types/known/anypb"
	_ "google.golang.org/protobuf/types/known/durationpb"
	_ "google.golang.org/protobuf/types/known/emptypb"
	_ "google.golang.org/protobuf/types/known/fieldmaskpb"
	_ "google.golang.org/protobuf/types/known/structpb"
	_ "google.golang.org/protobuf/types/known/timestamppb"
	_ "google.golang.org/protobuf/types/known/wrapperspb"
)

// builtinPrefixes are the import paths always taken from the binary's registry.
var builtinPrefixes = []string{"google/protobuf/", "google/api/", "google/rpc/"}

func builtin(path string) bool {
	for _, p := range builtinPrefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// Set is a closed set of file descriptors: every file a service needs, with its
// imports.
type Set struct {
	files *protoregistry.Files
}

// Files returns the set's files.
func (s *Set) Files() *protoregistry.Files { return s.files }

// Service finds a service by its full name ("library.v1.Library").
func (s *Set) Service(name string) (protoreflect.ServiceDescriptor, error) {
	d, err := s.files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("service %q is not defined in the loaded files (have: %s)", name, strings.Join(s.ServiceNames(), ", "))
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%q is a %T, not a service", name, d)
	}
	return sd, nil
}

// ServiceNames lists the full names of every service in the set, sorted.
func (s *Set) ServiceNames() []string {
	var out []string
	s.files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			out = append(out, string(fd.Services().Get(i).FullName()))
		}
		return true
	})
	slices.Sort(out)
	return out
}

// CompileProtoFiles compiles .proto files (paths relative to one of importPaths,
// or, with no import paths, to the working directory) and their imports.
func CompileProtoFiles(ctx context.Context, files, importPaths []string) (*Set, error) {
	if len(files) == 0 {
		return nil, errors.New("no .proto files given")
	}
	var problems []string
	c := protocompile.Compiler{
		Resolver:       NewResolver(importPaths),
		SourceInfoMode: protocompile.SourceInfoNone,
		Reporter: reporter.NewReporter(func(err reporter.ErrorWithPos) error {
			problems = append(problems, err.Error())
			return nil // keep going: report every error of the files at once
		}, nil),
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = filepath.ToSlash(f)
	}
	compiled, err := c.Compile(ctx, names...)
	if len(problems) > 0 {
		return nil, fmt.Errorf("compiling %s: %s", strings.Join(names, ", "), strings.Join(problems, "; "))
	}
	if err != nil {
		return nil, fmt.Errorf("compiling %s: %w", strings.Join(names, ", "), err)
	}
	set := &Set{files: new(protoregistry.Files)}
	for _, fd := range compiled {
		if err := set.add(fd); err != nil {
			return nil, err
		}
	}
	return set, nil
}

// NewResolver returns the import resolver CompileProtoFiles uses: google/* paths
// from the binary's registry, then the files under importPaths, then the registry
// again for anything else linked in. Exposed for tools that compile with other
// options (source info, for code generators).
func NewResolver(importPaths []string) protocompile.Resolver {
	src := &protocompile.SourceResolver{ImportPaths: importPaths}
	fromRegistry := func(path string) (protocompile.SearchResult, error) {
		fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
		if err != nil {
			return protocompile.SearchResult{}, err
		}
		return protocompile.SearchResult{Desc: fd}, nil
	}
	return protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
		if builtin(path) {
			if r, err := fromRegistry(path); err == nil {
				return r, nil
			}
		}
		r, err := src.FindFileByPath(path)
		if err == nil {
			return r, nil
		}
		if r2, err2 := fromRegistry(path); err2 == nil {
			return r2, nil
		}
		return protocompile.SearchResult{}, fmt.Errorf("%s: not found in import paths %q: %w", path, importPaths, err)
	})
}

// add registers fd and, first, its imports.
func (s *Set) add(fd protoreflect.FileDescriptor) error {
	if _, err := s.files.FindFileByPath(fd.Path()); err == nil {
		return nil
	}
	imports := fd.Imports()
	for i := 0; i < imports.Len(); i++ {
		if err := s.add(imports.Get(i).FileDescriptor); err != nil {
			return err
		}
	}
	if err := s.files.RegisterFile(fd); err != nil {
		return fmt.Errorf("registering %s: %w", fd.Path(), err)
	}
	return nil
}

// maxDescriptorSetBytes bounds a descriptor set file; real ones are far smaller.
const maxDescriptorSetBytes = 64 << 20

// LoadDescriptorSet reads a serialized google.protobuf.FileDescriptorSet (as
// written by `buf build -o` or `protoc --descriptor_set_out --include_imports`).
// Imports missing from the set are taken from the binary's registry, so a set
// built without --include_imports works when it imports only google/* files.
func LoadDescriptorSet(path string) (*Set, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxDescriptorSetBytes {
		return nil, fmt.Errorf("%s: %d bytes is more than the %d allowed for a descriptor set", path, st.Size(), maxDescriptorSetBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &fds); err != nil {
		return nil, fmt.Errorf("%s: not a FileDescriptorSet: %w", path, err)
	}
	set, err := FromFileDescriptorSet(&fds)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return set, nil
}

// FromFileDescriptorSet builds a Set from file descriptor protos in any order.
func FromFileDescriptorSet(fds *descriptorpb.FileDescriptorSet) (*Set, error) {
	byName := map[string]*descriptorpb.FileDescriptorProto{}
	for _, f := range fds.GetFile() {
		if _, dup := byName[f.GetName()]; dup {
			return nil, fmt.Errorf("file %s appears twice", f.GetName())
		}
		byName[f.GetName()] = f
	}
	set := &Set{files: new(protoregistry.Files)}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		if _, err := set.files.FindFileByPath(name); err == nil {
			return nil
		}
		if slices.Contains(chain, name) {
			return fmt.Errorf("import cycle: %s", strings.Join(append(chain, name), " -> "))
		}
		fdp, inSet := byName[name]
		if !inSet || builtin(name) {
			// google/* files come from the binary, so that they are the very
			// descriptors protojson's well-known-type handling knows.
			if fd, err := protoregistry.GlobalFiles.FindFileByPath(name); err == nil {
				return set.add(fd)
			}
			if !inSet {
				importer := "the set"
				if len(chain) > 0 {
					importer = chain[len(chain)-1]
				}
				return fmt.Errorf("%s is imported by %s but is neither in the set nor known to this binary", name, importer)
			}
		}
		for _, dep := range fdp.GetDependency() {
			if err := visit(dep, append(chain, name)); err != nil {
				return err
			}
		}
		fd, err := protodesc.NewFile(fdp, set.files)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return set.files.RegisterFile(fd)
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return set, nil
}

// Resolver returns a type resolver over the set's messages and extensions, then
// the binary's (so google.rpc error details resolve too), for google.protobuf.Any
// in JSON.
func (s *Set) Resolver() *ChainResolver {
	return &ChainResolver{local: dynamicpb.NewTypes(s.files)}
}

// ChainResolver looks a type up in a set's files, then in the binary's registry.
type ChainResolver struct {
	local *dynamicpb.Types
}

// FindMessageByName implements protoregistry.MessageTypeResolver.
func (c *ChainResolver) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	if mt, err := protoregistry.GlobalTypes.FindMessageByName(name); err == nil {
		return mt, nil
	}
	return c.local.FindMessageByName(name)
}

// FindMessageByURL implements protoregistry.MessageTypeResolver.
func (c *ChainResolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if mt, err := protoregistry.GlobalTypes.FindMessageByURL(url); err == nil {
		return mt, nil
	}
	return c.local.FindMessageByURL(url)
}

// FindExtensionByName implements protoregistry.ExtensionTypeResolver.
func (c *ChainResolver) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if xt, err := protoregistry.GlobalTypes.FindExtensionByName(name); err == nil {
		return xt, nil
	}
	return c.local.FindExtensionByName(name)
}

// FindExtensionByNumber implements protoregistry.ExtensionTypeResolver.
func (c *ChainResolver) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if xt, err := protoregistry.GlobalTypes.FindExtensionByNumber(message, field); err == nil {
		return xt, nil
	}
	return c.local.FindExtensionByNumber(message, field)
}
