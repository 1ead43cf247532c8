package ratelimit

import (
	"cmp"
	"fmt"
	"math"
	"net/textproto"
	"slices"
	"strconv"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/goccy/go-yaml/ast"
	"golang.org/x/time/rate"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
)

// Type is the name under which the filter is registered ("type: ratelimit" in a Route rule).
const Type = "ratelimit"

func init() { filter.Register(Type, Factory) }

// Limits of maxKeys. Below the minimum, generations are so small that keys in use
// are evicted every few requests; above the maximum the table would take well over
// a gigabyte.
const (
	DefaultMaxKeys = 100_000
	MinMaxKeys     = 16
	MaxMaxKeys     = 10_000_000
)

// Missing-key policies (missingKey).
const (
	MissingShared = "shared" // requests without the key header share one bucket
	MissingRefuse = "refuse" // requests without it get 400
)

// Config is the filter's config as written in a Route rule.
type Config struct {
	// RequestsPerSecond is the rate at which a key's bucket refills; fractions
	// allowed (0.5 is one request every two seconds). Required, more than zero.
	RequestsPerSecond float64 `yaml:"requestsPerSecond"`
	// Burst is the bucket's size: how many requests a key may make at once after
	// being idle. Required, at least 1.
	Burst int `yaml:"burst"`
	// Key says what a bucket belongs to. Default clientIP.
	Key Key `yaml:"key,omitempty"`
	// MissingKey is what happens to requests without the key header: "shared"
	// (default) puts them all in one bucket, "refuse" answers 400.
	MissingKey string `yaml:"missingKey,omitempty"`
	// PlanHeader names the request header whose value chooses a plan. Without it,
	// plans are chosen by key prefix (key: {header: ...} only).
	PlanHeader string `yaml:"planHeader,omitempty"`
	// Plans are usage plans: other rates for some keys, by plan header value or
	// key prefix. Requests that match none get the top-level rate.
	Plans map[string]Plan `yaml:"plans,omitempty"`
	// MaxKeys bounds the key table. Default 100000.
	MaxKeys *int `yaml:"maxKeys,omitempty"`
}

// Plan is one usage plan's rate.
type Plan struct {
	RequestsPerSecond float64 `yaml:"requestsPerSecond"`
	Burst             int     `yaml:"burst"`
}

// Key is what a bucket belongs to. It is written as a word or a one-field map:
//
//	key: clientIP
//	key: {header: X-API-Key}
//	key: {claim: sub}        # not supported yet: refused until the JWT filter lands
type Key struct {
	ClientIP bool
	Header   string
	Claim    string
}

// UnmarshalYAML reads the two forms of Key and names the position of a mistake.
func (k *Key) UnmarshalYAML(n ast.Node) error {
	const forms = `use clientIP, {header: NAME} or {claim: NAME}`
	switch v := n.(type) {
	case *ast.StringNode:
		if v.Value != "clientIP" {
			return nodeError(n, fmt.Sprintf("%q is not a key: %s", v.Value, forms))
		}
		*k = Key{ClientIP: true}
		return nil
	case *ast.MappingNode:
		if len(v.Values) != 1 {
			return nodeError(n, "a key has exactly one of header and claim")
		}
		return k.field(v.Values[0])
	case *ast.MappingValueNode:
		return k.field(v)
	}
	return nodeError(n, fmt.Sprintf("%s is not a key: %s", n.String(), forms))
}

func (k *Key) field(mv *ast.MappingValueNode) error {
	name := mv.Key.String()
	s, ok := mv.Value.(*ast.StringNode)
	if !ok {
		return nodeError(mv.Value, fmt.Sprintf("%s: want a name, got %s", name, mv.Value.String()))
	}
	if s.Value == "" && (name == "header" || name == "claim") {
		return nodeError(mv.Value, name+": a name is required")
	}
	switch name {
	case "header":
		*k = Key{Header: s.Value}
	case "claim":
		*k = Key{Claim: s.Value}
	default:
		return nodeError(mv.Key, fmt.Sprintf("unknown key source %q: use header or claim", name))
	}
	return nil
}

// nodeError is a decoding error at n's position; the config package fills in the
// file and field path.
func nodeError(n ast.Node, msg string) error {
	e := &config.Error{Msg: msg}
	if t := n.GetToken(); t != nil && t.Position != nil {
		e.Line, e.Column = t.Position.Line, t.Position.Column
	}
	return e
}

// Factory decodes and checks the config and builds the filter.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	var probs filter.Problems
	fail := probs.Add
	l := &limiter{now: time.Now, hkey: newHeaderKey()}

	l.plans = []plan{checkRate("", cfg.RequestsPerSecond, cfg.Burst, fail)}

	switch k := cfg.Key; {
	case k.Claim != "":
		fail("key.claim", "not supported yet: keys from token claims need the JWT filter, which has not landed; use clientIP or {header: NAME}")
	case k.Header != "":
		if !httpguts.ValidHeaderFieldName(k.Header) {
			fail("key.header", "%q is not a header name", k.Header)
		}
		l.mode, l.header = byHeader, textproto.CanonicalMIMEHeaderKey(k.Header)
	default: // clientIP, written or not
		l.mode = byClientIP
	}
	switch cfg.MissingKey {
	case "", MissingShared:
	case MissingRefuse:
		l.refuseMissing = true
	default:
		fail("missingKey", "%q is not one of %s and %s", cfg.MissingKey, MissingShared, MissingRefuse)
	}
	if cfg.MissingKey != "" && l.mode != byHeader {
		fail("missingKey", "only applies to key: {header: NAME}; a client address is never missing")
	}

	if cfg.PlanHeader != "" {
		if !httpguts.ValidHeaderFieldName(cfg.PlanHeader) {
			fail("planHeader", "%q is not a header name", cfg.PlanHeader)
		}
		l.planHeader = textproto.CanonicalMIMEHeaderKey(cfg.PlanHeader)
		if len(cfg.Plans) == 0 {
			fail("planHeader", "set, but there are no plans to choose from")
		}
	} else if len(cfg.Plans) > 0 && l.mode != byHeader {
		fail("plans", "need planHeader, or key: {header: NAME} (plans then match key prefixes)")
	}
	names := make([]string, 0, len(cfg.Plans))
	for name := range cfg.Plans {
		names = append(names, name)
	}
	slices.Sort(names) // problems in a stable order
	l.byName = make(map[string]int32, len(names))
	for _, name := range names {
		if name == "" {
			fail("plans", "a plan name must not be empty")
			continue
		}
		p := cfg.Plans[name]
		pl := checkRate("plans."+name+".", p.RequestsPerSecond, p.Burst, fail)
		pl.name = name
		l.byName[name] = int32(len(l.plans))
		l.plans = append(l.plans, pl)
	}
	if l.planHeader == "" {
		for i := 1; i < len(l.plans); i++ {
			l.prefixes = append(l.prefixes, int32(i))
		}
		// Longest first, so that "gold_eu_" wins over "gold_" for "gold_eu_123".
		slices.SortStableFunc(l.prefixes, func(a, b int32) int {
			return cmp.Compare(len(l.plans[b].name), len(l.plans[a].name))
		})
	}

	maxKeys := DefaultMaxKeys
	if cfg.MaxKeys != nil {
		maxKeys = *cfg.MaxKeys
		if maxKeys < MinMaxKeys || maxKeys > MaxMaxKeys {
			fail("maxKeys", "%d is out of range (%d to %d)", maxKeys, MinMaxKeys, MaxMaxKeys)
		}
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	l.table = newTable(maxKeys)
	l.shared = newEntry(0, &l.plans[0])
	return l, nil
}

// checkRate checks a rate and a burst (fields prefixed by prefix) and returns them
// as a plan.
func checkRate(prefix string, rps float64, burst int, fail func(string, string, ...any)) plan {
	if math.IsNaN(rps) || math.IsInf(rps, 0) || rps <= 0 {
		fail(prefix+"requestsPerSecond", "required, a number more than zero (got %v)", rps)
	}
	if burst < 1 {
		fail(prefix+"burst", "required, at least 1 (got %d)", burst)
	}
	return plan{limit: rate.Limit(rps), burst: burst, limitHdr: []string{strconv.Itoa(burst)}}
}
