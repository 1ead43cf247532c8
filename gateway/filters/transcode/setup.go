package transcode

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/internal/grpcconfig"
	"github.com/portcullis/portcullis/gateway/filters/internal/grpcupstream"
	"github.com/portcullis/portcullis/translate"
)

// Type is the name under which the filter is registered ("type: transcode").
const Type = "transcode"

func init() { filter.Register(Type, Factory) }

// Bounds of the config.
const (
	MaxMaxBodyBytes = 64 << 20
	MaxTimeout      = 10 * time.Minute
)

// What a request no binding takes gets (Config.Unmatched).
const (
	UnmatchedNotFound = "notFound"
	UnmatchedNext     = "next"
)

// Config is the filter's config as written in a Route rule.
type Config struct {
	// ProtoFiles are .proto files compiled at load time. Exactly one of
	// protoFiles, descriptorSetFile and reflection is required.
	ProtoFiles []string `yaml:"protoFiles,omitempty"`
	// ImportPaths are the directories imports are looked up in. A proto file
	// under none of them is compiled with its own directory as one. google/api,
	// google/rpc and google/protobuf files are built in and need no path.
	ImportPaths []string `yaml:"importPaths,omitempty"`
	// DescriptorSetFile is a compiled google.protobuf.FileDescriptorSet (buf
	// build -o, or protoc --descriptor_set_out --include_imports).
	DescriptorSetFile string `yaml:"descriptorSetFile,omitempty"`
	// Reflection fetches the descriptors from the cluster's gRPC server
	// reflection service, in the background, instead of from files.
	Reflection *ReflectionConfig `yaml:"reflection,omitempty"`
	// HTTPRulesFile holds google.api.http rules (Google service config YAML,
	// http.rules) that replace or supply the annotations of methods.
	HTTPRulesFile string `yaml:"httpRulesFile,omitempty"`
	// Services are the full names of the gRPC services exposed. Required.
	Services []string `yaml:"services"`
	// Cluster is the gRPC upstream: a Cluster of this config with protocol H2C or
	// HTTP2. Required.
	Cluster string `yaml:"cluster"`
	// MaxBodyBytes bounds a request body. Default 4 MiB, at most 64 MiB.
	MaxBodyBytes *int64 `yaml:"maxBodyBytes,omitempty"`
	// Timeout is the deadline of a call without a Grpc-Timeout header, and the
	// most one may ask for. Default none (the cluster's own limits apply); at
	// most 10m.
	Timeout *config.Duration `yaml:"timeout,omitempty"`
	// Unmatched is what a request no binding takes gets: "notFound" (default: a
	// 404 google.rpc.Status JSON, or 405 when another method would match) or
	// "next" (passed on down the rule's chain).
	Unmatched string `yaml:"unmatched,omitempty"`
	// RequestHeaders are request headers passed to the service as metadata.
	RequestHeaders []string `yaml:"requestHeaders,omitempty"`
	// GRPCMetadataHeaders passes Grpc-Metadata-<key> request headers as
	// metadata <key>. Default false.
	GRPCMetadataHeaders bool `yaml:"grpcMetadataHeaders,omitempty"`
	// ResponseMetadata are the response metadata keys passed back as
	// Grpc-Metadata-<key> headers (and Grpc-Trailer-<key> trailers).
	ResponseMetadata []string `yaml:"responseMetadata,omitempty"`
	// JSON chooses the JSON form of messages.
	JSON JSONConfig `yaml:"json,omitempty"`
}

// ReflectionConfig is the reflection descriptor source.
type ReflectionConfig struct {
	// RefreshInterval is how often the descriptors are fetched again. Default
	// 5m, from 1s to 24h.
	RefreshInterval *config.Duration `yaml:"refreshInterval,omitempty"`
}

// JSONConfig are the JSON options; each default is grpc-gateway's, except
// discardUnknown.
type JSONConfig struct {
	// UseProtoNames writes fields by proto name (book_id), not lowerCamelCase.
	UseProtoNames bool `yaml:"useProtoNames,omitempty"`
	// OmitUnpopulated leaves default-valued fields out of responses.
	OmitUnpopulated bool `yaml:"omitUnpopulated,omitempty"`
	// UseEnumNumbers writes enums as numbers, not names.
	UseEnumNumbers bool `yaml:"useEnumNumbers,omitempty"`
	// DiscardUnknown accepts and drops unknown body fields (otherwise a 400
	// naming the field).
	DiscardUnknown bool `yaml:"discardUnknown,omitempty"`
}

// reservedRequestHeaders frame the gRPC call or carry its deadline; passing them
// as metadata would let a client change how the call is made.
var reservedRequestHeaders = []string{"content-type", "te", "host", "connection", "content-length",
	"transfer-encoding", "upgrade", "keep-alive", "trailer", "user-agent"}

// Factory decodes and checks the config, loads the descriptors and rules and
// compiles the transcoder. It reads local files only: with reflection, the
// descriptors are fetched in the background (and read back from the data
// directory when a previous build kept them).
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	var probs filter.Problems
	fail := probs.Add
	f := &transcodeFilter{cluster: cfg.Cluster, route: b.Route, log: b.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	opts := translate.Options{
		UseProtoNames:       cfg.JSON.UseProtoNames,
		OmitUnpopulated:     cfg.JSON.OmitUnpopulated,
		UseEnumNumbers:      cfg.JSON.UseEnumNumbers,
		DiscardUnknown:      cfg.JSON.DiscardUnknown,
		GRPCMetadataHeaders: cfg.GRPCMetadataHeaders,
	}
	switch {
	case cfg.Cluster == "":
		fail("cluster", "required (the Cluster of the gRPC service, protocol H2C or HTTP2)")
	case b.Upstreams == nil:
		fail("cluster", "no clusters are available to filters here")
	default:
		up, ok := b.Upstreams.Upstream(cfg.Cluster)
		if !ok {
			fail("cluster", "no Cluster %q in this config", cfg.Cluster)
		}
		f.upstream = up
	}
	if p := cfg.MaxBodyBytes; p != nil {
		if *p < 1 || *p > MaxMaxBodyBytes {
			fail("maxBodyBytes", "%d is outside 1 to %d", *p, MaxMaxBodyBytes)
		}
		opts.MaxBodyBytes = *p
	}
	if p := cfg.Timeout; p != nil {
		if d := p.D(); d <= 0 || d > MaxTimeout {
			fail("timeout", "%v is outside (0, %v]", d, MaxTimeout)
		}
		opts.Timeout = p.D()
	}
	switch cfg.Unmatched {
	case "", UnmatchedNotFound:
	case UnmatchedNext:
		f.passUnmatched = true
	default:
		fail("unmatched", "%q is neither %q nor %q", cfg.Unmatched, UnmatchedNotFound, UnmatchedNext)
	}
	for i, h := range cfg.RequestHeaders {
		field := "requestHeaders[" + strconv.Itoa(i) + "]"
		l := strings.ToLower(h)
		switch {
		case !grpcconfig.ValidHeaderName(h):
			fail(field, "%q is not a header name", h)
		case strings.HasPrefix(l, "grpc-") || containsFold(reservedRequestHeaders, l):
			fail(field, "%q frames the gRPC call and cannot be passed as metadata", h)
		}
		opts.RequestHeaders = append(opts.RequestHeaders, h)
	}
	for i, k := range cfg.ResponseMetadata {
		if !grpcconfig.ValidHeaderName(k) {
			fail("responseMetadata["+strconv.Itoa(i)+"]", "%q is not a metadata key", k)
		}
		opts.ResponseMetadata = append(opts.ResponseMetadata, k)
	}
	if len(cfg.Services) == 0 {
		fail("services", "name at least one gRPC service to expose (package.Service)")
	}
	set, rules := grpcconfig.Load(grpcconfig.Source{ProtoFiles: cfg.ProtoFiles, ImportPaths: cfg.ImportPaths,
		DescriptorSetFile: cfg.DescriptorSetFile, HTTPRulesFile: cfg.HTTPRulesFile, Reflection: cfg.Reflection != nil}, true, fail)
	interval := DefaultRefreshInterval
	if cfg.Reflection != nil && cfg.Reflection.RefreshInterval != nil {
		interval = cfg.Reflection.RefreshInterval.D()
		if interval < MinRefreshInterval || interval > MaxRefreshInterval {
			fail("reflection.refreshInterval", "%v is outside [%v, %v]", interval, MinRefreshInterval, MaxRefreshInterval)
		}
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	if cfg.Reflection != nil {
		// The descriptors come later, from the network; nothing here waits.
		f.live = newLiveSource(b.Route, cfg.Cluster, grpcupstream.Invoker{Upstream: f.upstream}, cfg.Services, rules,
			opts, interval, b.DataDir, f.log)
		f.live.start()
		return f, nil
	}
	services := grpcconfig.Services(set, cfg.Services, fail)
	if err := probs.Err(); err != nil {
		return nil, err
	}
	opts.Resolver = set.Resolver()
	t, err := translate.New(services, rules, opts)
	if err != nil {
		// One line: the compiler puts the error in one message.
		return nil, fmt.Errorf("services: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	f.static = t
	return f, nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
