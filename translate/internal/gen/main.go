// Command gen regenerates the Go code of the transcoder's test protos: it compiles
// a .proto with protocompile (google/* imports from the descriptors linked into
// this program, so no third-party .proto file is needed on disk), hands the
// compiled files to the protoc plugins as a CodeGeneratorRequest on stdin, and
// writes the files they answer with. It also writes the compiled file set as a
// FileDescriptorSet, which the descriptor-set tests load.
//
// Run from the repository root (scripts/translate-testpb.sh does):
//
//	go run ./translate/internal/gen -dir translate/internal/testpb -proto library.proto
//
// The plugins (protoc-gen-go, protoc-gen-go-grpc, protoc-gen-grpc-gateway) are
// looked up in -bin, then on PATH. It is not part of any binary the project ships.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"

	"github.com/portcullis/portcullis/translate/descriptors"
)

var plugins = []string{"protoc-gen-go", "protoc-gen-go-grpc", "protoc-gen-grpc-gateway"}

func main() {
	dir := flag.String("dir", "translate/internal/testpb", "directory holding the .proto; generated files are written beside it")
	file := flag.String("proto", "library.proto", "the .proto file, relative to -dir")
	bin := flag.String("bin", filepath.Join(os.Getenv("HOME"), "go", "bin"), "directory of the protoc plugins (PATH is searched next)")
	descOut := flag.String("descriptor-set", "testdata/library.binpb", "where to write the FileDescriptorSet, relative to -dir (empty: not written)")
	flag.Parse()
	if err := run(*dir, *file, *bin, *descOut); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(dir, file, bin, descOut string) error {
	set, err := descriptors.CompileProtoFiles(context.Background(), []string{file}, []string{dir})
	if err != nil {
		return err
	}
	// Recompile with source info so that comments reach the generated code.
	c := protocompile.Compiler{
		Resolver:       descriptors.NewResolver([]string{dir}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	withSource, err := c.Compile(context.Background(), file)
	if err != nil {
		return err
	}
	target := withSource[0].(linker.Result).FileDescriptorProto()

	fd, err := set.Files().FindFileByPath(file)
	if err != nil {
		return err
	}
	var ordered []*descriptorpb.FileDescriptorProto
	seen := map[string]bool{}
	var visit func(protoreflect.FileDescriptor)
	visit = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		for i := 0; i < f.Imports().Len(); i++ {
			visit(f.Imports().Get(i).FileDescriptor)
		}
		if f.Path() == file {
			ordered = append(ordered, target)
			return
		}
		ordered = append(ordered, protodesc.ToFileDescriptorProto(f))
	}
	visit(fd)

	if descOut != "" {
		// The set carries no source info: it is what a deployment would ship.
		plain := make([]*descriptorpb.FileDescriptorProto, len(ordered))
		for i, f := range ordered {
			plain[i] = proto.CloneOf(f)
			plain[i].SourceCodeInfo = nil
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&descriptorpb.FileDescriptorSet{File: plain})
		if err != nil {
			return err
		}
		p := filepath.Join(dir, descOut)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}

	for _, plugin := range plugins {
		req := &pluginpb.CodeGeneratorRequest{
			FileToGenerate: []string{file},
			Parameter:      proto.String("paths=source_relative"),
			ProtoFile:      ordered,
			CompilerVersion: &pluginpb.Version{
				Major: proto.Int32(0), Minor: proto.Int32(0), Patch: proto.Int32(0), Suffix: proto.String("portcullis-gen"),
			},
		}
		resp, err := runPlugin(bin, plugin, req)
		if err != nil {
			return err
		}
		for _, f := range resp.GetFile() {
			if f.GetInsertionPoint() != "" {
				return fmt.Errorf("%s: insertion points are not supported (%s)", plugin, f.GetName())
			}
			p := filepath.Join(dir, filepath.FromSlash(f.GetName()))
			if err := os.WriteFile(p, []byte(f.GetContent()), 0o644); err != nil {
				return err
			}
			fmt.Println("wrote", p)
		}
	}
	return nil
}

func runPlugin(bin, name string, req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, error) {
	path := filepath.Join(bin, name)
	if _, err := os.Stat(path); err != nil {
		if path, err = exec.LookPath(name); err != nil {
			return nil, fmt.Errorf("%s: not in %s nor on PATH", name, bin)
		}
	}
	in, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	var resp pluginpb.CodeGeneratorResponse
	if err := proto.Unmarshal(out.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("%s: bad response: %w", name, err)
	}
	if resp.Error != nil {
		return nil, errors.New(name + ": " + resp.GetError())
	}
	return &resp, nil
}
