package fault

import (
	"math"
	"net/textproto"
	"strconv"

	"golang.org/x/net/http/httpguts"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
)

// Type is the name under which the filter is registered ("type: fault" in a Route rule).
const Type = "fault"

func init() { filter.Register(Type, Factory) }

// Config is the filter's config as written in a Route rule. At least one of Delay
// and Abort is required.
type Config struct {
	Delay *Delay `yaml:"delay,omitempty"`
	Abort *Abort `yaml:"abort,omitempty"`
	// Header, when set, limits faults to requests that carry this header (any value),
	// so that a fault can be tried on production routes by chosen clients only.
	Header string `yaml:"header,omitempty"`
}

// Delay holds selected requests for a fixed time before passing them on.
type Delay struct {
	// Duration is required and must be more than zero.
	Duration config.Duration `yaml:"duration"`
	// Percent of requests delayed, 0 to 100, fractions allowed. Default 100.
	Percent *float64 `yaml:"percent,omitempty"`
}

// Abort answers selected requests with an error instead of passing them on.
type Abort struct {
	// Status is the HTTP status, 400 to 599. Required.
	Status int `yaml:"status"`
	// GRPCStatus, when set (1 to 16), is used for gRPC requests instead: they get
	// HTTP 200 with this grpc-status, which is how a gRPC server fails a call.
	GRPCStatus *int `yaml:"grpcStatus,omitempty"`
	// Percent of requests aborted, 0 to 100, fractions allowed. Default 100.
	Percent *float64 `yaml:"percent,omitempty"`
}

// Factory decodes and checks the config and builds the filter.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	f := &fault{wait: wait}
	var probs filter.Problems
	fail := probs.Add
	if cfg.Delay == nil && cfg.Abort == nil {
		fail("", "at least one of delay and abort is required")
	}
	if d := cfg.Delay; d != nil {
		if d.Duration <= 0 {
			fail("delay.duration", "required, and more than zero")
		}
		f.delay = d.Duration.D()
		f.delayPercent = percent("delay.percent", d.Percent, fail)
	}
	if a := cfg.Abort; a != nil {
		if a.Status < 400 || a.Status > 599 {
			fail("abort.status", "%d is not an error status (400 to 599)", a.Status)
		}
		f.abortStatus = a.Status
		f.abortPercent = percent("abort.percent", a.Percent, fail)
		if g := a.GRPCStatus; g != nil {
			// 0 is OK, which is no fault; above 16 is not a gRPC code.
			if *g < 1 || *g > 16 {
				fail("abort.grpcStatus", "%d is not a gRPC error code (1 to 16)", *g)
			}
			f.grpcStatus = strconv.Itoa(*g)
		}
	}
	if cfg.Header != "" {
		if !httpguts.ValidHeaderFieldName(cfg.Header) {
			fail("header", "%q is not a valid header name", cfg.Header)
		}
		f.header = textproto.CanonicalMIMEHeaderKey(cfg.Header)
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

// percent checks an optional percentage and returns it, 100 when absent.
func percent(field string, p *float64, fail func(string, string, ...any)) float64 {
	if p == nil {
		return 100
	}
	if math.IsNaN(*p) || *p < 0 || *p > 100 {
		fail(field, "%v is not a percentage (0 to 100)", *p)
	}
	return *p
}
