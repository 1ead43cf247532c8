package grpcweb

import (
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/internal/grpcupstream"
	"github.com/portcullis/portcullis/translate/grpcweb"
)

// Type is the name under which the filter is registered ("type: grpcweb").
const Type = "grpcweb"

func init() { filter.Register(Type, Factory) }

// MaxMaxRequestBytes bounds Config.MaxRequestBytes.
const MaxMaxRequestBytes = 64 << 20

// Config is the filter's config as written in a Route rule.
type Config struct {
	// Cluster is the gRPC upstream: a Cluster of this config with protocol H2C
	// or HTTP2. Required.
	Cluster string `yaml:"cluster"`
	// MaxRequestBytes bounds a request body after base64 decoding; a larger one
	// ends the call with RESOURCE_EXHAUSTED. Default 4 MiB, at most 64 MiB.
	MaxRequestBytes *int64 `yaml:"maxRequestBytes,omitempty"`
}

// Factory decodes and checks the config. It does no I/O.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	var probs filter.Problems
	f := &webFilter{cluster: cfg.Cluster, log: b.LoggerFor(Type)}
	switch {
	case cfg.Cluster == "":
		probs.Add("cluster", "required (the Cluster of the gRPC service, protocol H2C or HTTP2)")
	case b.Upstreams == nil:
		probs.Add("cluster", "no clusters are available to filters here")
	default:
		up, ok := b.Upstreams.Upstream(cfg.Cluster)
		if !ok {
			probs.Add("cluster", "no Cluster %q in this config", cfg.Cluster)
		}
		f.upstream = grpcupstream.Invoker{Upstream: up}
	}
	var opts grpcweb.Options
	if p := cfg.MaxRequestBytes; p != nil {
		if *p < 1 || *p > MaxMaxRequestBytes {
			probs.Add("maxRequestBytes", "%d is outside 1 to %d", *p, MaxMaxRequestBytes)
		}
		opts.MaxRequestBytes = *p
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	f.proxy = grpcweb.New(opts)
	return f, nil
}
