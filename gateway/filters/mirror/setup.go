package mirror

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
)

// Type is the name under which the filter is registered ("type: mirror" in a Route rule).
const Type = "mirror"

func init() { filter.Register(Type, Factory) }

// Defaults of the optional fields.
const (
	DefaultFraction     = 1.0
	DefaultMaxBodyBytes = 64 << 10
	DefaultMaxInFlight  = 64
	DefaultTimeout      = 5 * time.Second
)

// Config is the filter's config as written in a Route rule.
type Config struct {
	// Cluster receives the copies. Required; a Cluster of the same snapshot.
	Cluster string `yaml:"cluster"`
	// Fraction of requests copied, 0 to 1. Default 1.
	Fraction *float64 `yaml:"fraction,omitempty"`
	// MaxBodyBytes is the largest request body copied; a request with a larger body
	// is not mirrored. 0 mirrors only requests without a body. Default 64 KiB.
	MaxBodyBytes *int64 `yaml:"maxBodyBytes,omitempty"`
	// MaxInFlight bounds the copies being buffered or sent at once; over it a request
	// is not mirrored. Default 64.
	MaxInFlight *int `yaml:"maxInFlight,omitempty"`
	// Timeout bounds each copy, counted from when it is sent. Default 5s.
	Timeout *config.Duration `yaml:"timeout,omitempty"`
}

// Factory decodes and checks the config, resolves the cluster and builds the filter.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	var probs filter.Problems
	fail := probs.Add
	m := &mirror{
		cluster:     cfg.Cluster,
		route:       b.Route,
		fraction:    DefaultFraction,
		maxBody:     DefaultMaxBodyBytes,
		maxInFlight: DefaultMaxInFlight,
		timeout:     DefaultTimeout,
		log:         b.Logger,
	}
	switch {
	case cfg.Cluster == "":
		fail("cluster", "required")
	case b.Upstreams == nil:
		fail("cluster", "no clusters are available to filters here")
	default:
		up, ok := b.Upstreams.Upstream(cfg.Cluster)
		if !ok {
			fail("cluster", "no Cluster %q in this config", cfg.Cluster)
		}
		m.upstream = up
	}
	if p := cfg.Fraction; p != nil {
		if math.IsNaN(*p) || *p < 0 || *p > 1 {
			fail("fraction", "%v is not a fraction (0 to 1)", *p)
		}
		m.fraction = *p
	}
	if p := cfg.MaxBodyBytes; p != nil {
		if *p < 0 {
			fail("maxBodyBytes", "must not be negative")
		}
		m.maxBody = *p
	}
	if p := cfg.MaxInFlight; p != nil {
		if *p < 1 {
			fail("maxInFlight", "must be at least 1")
		}
		m.maxInFlight = int64(*p)
	}
	if p := cfg.Timeout; p != nil {
		if *p <= 0 {
			fail("timeout", "must be more than zero")
		}
		m.timeout = p.D()
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.base, m.stop = context.WithCancel(context.Background())
	return m, nil
}
