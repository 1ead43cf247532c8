package restbridge

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/internal/grpcconfig"
	"github.com/portcullis/portcullis/gateway/filters/internal/grpcupstream"
	"github.com/portcullis/portcullis/translate"
)

// Type is the name under which the filter is registered ("type: restbridge").
const Type = "restbridge"

func init() { filter.Register(Type, Factory) }

// Bounds of the config.
const (
	MaxMaxResponseBytes = 64 << 20
	MaxTimeout          = 10 * time.Minute
)

// What a gRPC request for a method that is not bridged gets (Config.Unmatched).
const (
	UnmatchedUnimplemented = "unimplemented"
	UnmatchedNext          = "next"
)

// Config is the filter's config as written in a Route rule.
type Config struct {
	// ProtoFiles, ImportPaths, DescriptorSetFile and HTTPRulesFile name the
	// descriptors and rules, as for the transcode filter. Exactly one of
	// protoFiles and descriptorSetFile is required.
	ProtoFiles        []string `yaml:"protoFiles,omitempty"`
	ImportPaths       []string `yaml:"importPaths,omitempty"`
	DescriptorSetFile string   `yaml:"descriptorSetFile,omitempty"`
	HTTPRulesFile     string   `yaml:"httpRulesFile,omitempty"`
	// Services are the full names of the gRPC services bridged. Required.
	Services []string `yaml:"services"`
	// Cluster is the REST API: a Cluster of this config (HTTP, or TLS
	// origination for an external API). Required.
	Cluster string `yaml:"cluster"`
	// Host is the Host header of the REST requests ("api.example.com").
	// Default: the gRPC request's authority.
	Host string `yaml:"host,omitempty"`
	// PathPrefix goes before every path built from a template ("/api/v2").
	PathPrefix string `yaml:"pathPrefix,omitempty"`
	// Timeout bounds a call without grpc-timeout, and is the most one may ask
	// for. Default: the client's grpc-timeout alone; at most 10m.
	Timeout *config.Duration `yaml:"timeout,omitempty"`
	// RequestMetadata are gRPC metadata keys sent as HTTP headers of the same
	// name ("authorization", "x-request-id").
	RequestMetadata []string `yaml:"requestMetadata,omitempty"`
	// ResponseHeaders are REST response headers returned as gRPC metadata.
	ResponseHeaders []string `yaml:"responseHeaders,omitempty"`
	// MaxResponseBytes bounds a REST response body. Default 4 MiB, at most 64 MiB.
	MaxResponseBytes *int64 `yaml:"maxResponseBytes,omitempty"`
	// Unmatched is what a gRPC request for a method that is not bridged gets:
	// "unimplemented" (default: UNIMPLEMENTED) or "next" (down the chain).
	Unmatched string `yaml:"unmatched,omitempty"`
	// JSON chooses the JSON form of requests and how responses are read.
	JSON JSONConfig `yaml:"json,omitempty"`
}

// JSONConfig are the JSON options.
type JSONConfig struct {
	// UseProtoNames writes request fields (body and query) by proto name
	// (book_id) instead of lowerCamelCase (bookId).
	UseProtoNames bool `yaml:"useProtoNames,omitempty"`
	// RejectUnknownFields fails a call whose response has fields the response
	// message does not (default: they are dropped).
	RejectUnknownFields bool `yaml:"rejectUnknownFields,omitempty"`
}

// reservedMetadata frame the gRPC call or the HTTP request; sending them on
// would let a client change how either is made.
var reservedMetadata = []string{"content-type", "content-length", "te", "host", "connection", "transfer-encoding",
	"upgrade", "keep-alive", "trailer", "user-agent", "accept"}

// grpcResponseFields carry a gRPC response's framing and status.
var grpcResponseFields = []string{"grpc-status", "grpc-message", "grpc-status-details-bin", "grpc-encoding", "grpc-accept-encoding"}

// Factory decodes and checks the config and compiles the bridge. It reads
// local files only.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	var probs filter.Problems
	fail := probs.Add
	f := &bridgeFilter{cluster: cfg.Cluster, log: b.LoggerFor(Type)}
	opts := translate.BridgeOptions{
		UseProtoNames:       cfg.JSON.UseProtoNames,
		RejectUnknownFields: cfg.JSON.RejectUnknownFields,
		Host:                cfg.Host,
		PathPrefix:          cfg.PathPrefix,
	}
	switch {
	case cfg.Cluster == "":
		fail("cluster", "required (the Cluster of the REST API)")
	case b.Upstreams == nil:
		fail("cluster", "no clusters are available to filters here")
	default:
		up, ok := b.Upstreams.Upstream(cfg.Cluster)
		if !ok {
			fail("cluster", "no Cluster %q in this config", cfg.Cluster)
		}
		f.upstream = grpcupstream.Invoker{Upstream: up}
	}
	if h := cfg.Host; h != "" {
		if u, err := url.Parse("http://" + h); err != nil || u.Host != h || u.User != nil {
			fail("host", "%q is not a host name (with an optional port)", h)
		}
	}
	if p := cfg.PathPrefix; p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#") || strings.Contains(p, "//")) {
		fail("pathPrefix", "%q must start with / and hold no query, fragment or empty segment", p)
	}
	if p := cfg.Timeout; p != nil {
		if d := p.D(); d <= 0 || d > MaxTimeout {
			fail("timeout", "%v is outside (0, %v]", d, MaxTimeout)
		}
		opts.Timeout = p.D()
	}
	if p := cfg.MaxResponseBytes; p != nil {
		if *p < 1 || *p > MaxMaxResponseBytes {
			fail("maxResponseBytes", "%d is outside 1 to %d", *p, MaxMaxResponseBytes)
		}
		opts.MaxResponseBytes = int(*p)
	}
	switch cfg.Unmatched {
	case "", UnmatchedUnimplemented:
	case UnmatchedNext:
		f.passUnmatched = true
	default:
		fail("unmatched", "%q is neither %q nor %q", cfg.Unmatched, UnmatchedUnimplemented, UnmatchedNext)
	}
	for i, k := range cfg.RequestMetadata {
		field := "requestMetadata[" + strconv.Itoa(i) + "]"
		l := strings.ToLower(k)
		switch {
		case !grpcconfig.ValidHeaderName(k):
			fail(field, "%q is not a metadata key", k)
		case strings.HasPrefix(l, "grpc-") || strings.HasPrefix(l, ":") || containsFold(reservedMetadata, l):
			fail(field, "%q frames the call and cannot be sent on", k)
		}
		opts.RequestMetadata = append(opts.RequestMetadata, k)
	}
	for i, h := range cfg.ResponseHeaders {
		l := strings.ToLower(h)
		switch {
		case !grpcconfig.ValidHeaderName(h):
			fail("responseHeaders["+strconv.Itoa(i)+"]", "%q is not a header name", h)
		case containsFold(grpcResponseFields, l) || containsFold(reservedMetadata, l):
			fail("responseHeaders["+strconv.Itoa(i)+"]", "%q would be read as part of the gRPC response", h)
		}
		opts.ResponseHeaders = append(opts.ResponseHeaders, h)
	}
	if len(cfg.Services) == 0 {
		fail("services", "name at least one gRPC service to bridge (package.Service)")
	}
	set, rules := grpcconfig.Load(grpcconfig.Source{ProtoFiles: cfg.ProtoFiles, ImportPaths: cfg.ImportPaths,
		DescriptorSetFile: cfg.DescriptorSetFile, HTTPRulesFile: cfg.HTTPRulesFile}, false, fail)
	if err := probs.Err(); err != nil {
		return nil, err
	}
	services := grpcconfig.Services(set, cfg.Services, fail)
	if err := probs.Err(); err != nil {
		return nil, err
	}
	opts.Resolver = set.Resolver()
	br, err := translate.NewBridge(services, rules, opts)
	if err != nil {
		return nil, fmt.Errorf("services: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	f.bridge = br
	f.bridged = map[string]bool{}
	for _, m := range br.Methods() {
		f.bridged[m] = true
	}
	for _, s := range br.Skipped() {
		f.log.Info("restbridge: method not bridged", "method", s)
	}
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
