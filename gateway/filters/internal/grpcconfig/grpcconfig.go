// Package grpcconfig holds the config pieces the gRPC translation filters
// (transcode, restbridge) share: the descriptor source fields and their loading,
// the HTTP rule file, and header-name checks, so that both name the same fields
// the same way and report the same mistakes.
//
// It is not for decoding a filter's whole config (each filter owns its Config
// struct) nor for anything a request touches.
package grpcconfig

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/portcullis/portcullis/translate/descriptors"
)

// compileTimeout bounds compiling the .proto files of one config.
const compileTimeout = 30 * time.Second

// Source is where a filter's descriptors and rules come from, as configured.
// Reflection is set when the filter's own config chose server reflection (only
// transcode offers it); Load then loads the rule file alone.
type Source struct {
	ProtoFiles        []string
	ImportPaths       []string
	DescriptorSetFile string
	HTTPRulesFile     string
	Reflection        bool
}

// Fail records a problem with a config field (filter.Problems.Add).
type Fail func(field, format string, args ...any)

// Load loads the descriptor source and the rule file, reporting problems with
// the field that named them. The set is nil with Reflection or after a problem.
func Load(src Source, reflectionOffered bool, fail Fail) (*descriptors.Set, map[string]*annotations.HttpRule) {
	var rules map[string]*annotations.HttpRule
	if src.HTTPRulesFile != "" {
		r, err := descriptors.LoadRuleFile(src.HTTPRulesFile)
		if err != nil {
			fail("httpRulesFile", "%v", err)
		}
		rules = r
	}
	sources := 0
	for _, given := range []bool{len(src.ProtoFiles) > 0, src.DescriptorSetFile != "", src.Reflection} {
		if given {
			sources++
		}
	}
	names := "protoFiles and descriptorSetFile"
	if reflectionOffered {
		names = "protoFiles, descriptorSetFile and reflection"
	}
	switch {
	case sources > 1:
		fail("descriptorSetFile", "give one of %s, not several", names)
	case src.Reflection:
		if len(src.ImportPaths) > 0 {
			fail("importPaths", "only meaningful with protoFiles")
		}
		return nil, rules
	case src.DescriptorSetFile != "":
		if len(src.ImportPaths) > 0 {
			fail("importPaths", "only meaningful with protoFiles")
		}
		set, err := descriptors.LoadDescriptorSet(src.DescriptorSetFile)
		if err != nil {
			fail("descriptorSetFile", "%v", err)
			return nil, nil
		}
		return set, rules
	case len(src.ProtoFiles) > 0:
		for i, d := range src.ImportPaths {
			if st, err := os.Stat(d); err != nil || !st.IsDir() {
				fail("importPaths["+strconv.Itoa(i)+"]", "%q is not a directory", d)
			}
		}
		files, paths := protoNames(src.ProtoFiles, src.ImportPaths)
		ctx, cancel := context.WithTimeout(context.Background(), compileTimeout)
		defer cancel()
		set, err := descriptors.CompileProtoFiles(ctx, files, paths)
		if err != nil {
			fail("protoFiles", "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
			return nil, nil
		}
		return set, rules
	default:
		fail("protoFiles", "give %s: the services' descriptors are needed", strings.Replace(names, " and ", " or ", 1))
	}
	return nil, nil
}

// Services finds the named services in set, reporting each missing one with
// its index ("services[1]").
func Services(set *descriptors.Set, names []string, fail Fail) []protoreflect.ServiceDescriptor {
	var out []protoreflect.ServiceDescriptor
	for i, name := range names {
		sd, err := set.Service(name)
		if err != nil {
			fail("services["+strconv.Itoa(i)+"]", "%v", err)
			continue
		}
		out = append(out, sd)
	}
	return out
}

// protoNames turns proto file paths into names relative to the import path that
// holds each, adding a file's own directory as an import path when none does.
func protoNames(files, importPaths []string) (names, paths []string) {
	paths = append(paths, importPaths...)
	for _, f := range files {
		name := ""
		for _, ip := range paths {
			if rel, err := filepath.Rel(ip, f); err == nil && !strings.HasPrefix(rel, "..") {
				name = filepath.ToSlash(rel)
				break
			}
		}
		if name == "" {
			paths = append(paths, filepath.Dir(f))
			name = filepath.Base(f)
		}
		names = append(names, name)
	}
	return names, paths
}

// ValidHeaderName reports a header name (or metadata key) made of letters,
// digits, '-', '_' and '.'.
func ValidHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
