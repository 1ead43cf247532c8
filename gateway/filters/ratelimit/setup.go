package ratelimit

import (
	"cmp"
	"fmt"
	"io"
	"log/slog"
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

// Address grouping of clientIP keys: the default and the bounds of
// ipv4PrefixLength and ipv6PrefixLength. A /64 is what one IPv6 subscriber or
// host usually gets (RFC 6177), so per-address IPv6 keys would hand every client
// 2^64 buckets; shorter than /32 would put whole providers into one bucket.
const (
	DefaultIPv4PrefixLength = 32
	MinIPv4PrefixLength     = 8
	DefaultIPv6PrefixLength = 64
	MinIPv6PrefixLength     = 32
)

// Missing-key policies (missingKey).
const (
	MissingShared = "shared" // requests without a key share one bucket
	MissingRefuse = "refuse" // requests without a key are refused: 400, 401 or 403
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
	// MissingKey is what happens to requests without a key (no key header, no
	// identity, no such claim): "shared" (default) puts them all in one bucket,
	// "refuse" answers 400 (header), 401 (no identity) or 403 (no such claim).
	MissingKey string `yaml:"missingKey,omitempty"`
	// IPv4PrefixLength groups IPv4 clients of clientIP keys by prefix. Default 32
	// (one bucket per address), 8 to 32.
	IPv4PrefixLength *int `yaml:"ipv4PrefixLength,omitempty"`
	// IPv6PrefixLength groups IPv6 clients of clientIP keys by prefix. Default 64,
	// 32 to 128.
	IPv6PrefixLength *int `yaml:"ipv6PrefixLength,omitempty"`
	// PlanHeader names the request header whose value chooses a plan.
	PlanHeader string `yaml:"planHeader,omitempty"`
	// PlanClaim is a (dotted) claim of the caller's identity whose value chooses a
	// plan. Exclusive with PlanHeader. Without either, plans are chosen by key
	// prefix (key: {header: ...} only).
	PlanClaim string `yaml:"planClaim,omitempty"`
	// Plans are usage plans: other rates for some keys, by plan header value,
	// plan claim value or key prefix. Requests that match none get the top-level
	// rate.
	Plans map[string]Plan `yaml:"plans,omitempty"`
	// CountOnly makes only responses with these statuses take a token (failed
	// login attempts); other requests pass without using the bucket, unless it is
	// empty.
	CountOnly *CountOnly `yaml:"countOnly,omitempty"`
	// MaxKeys bounds the key table. Default 100000.
	MaxKeys *int `yaml:"maxKeys,omitempty"`
}

// Plan is one usage plan's rate.
type Plan struct {
	RequestsPerSecond float64 `yaml:"requestsPerSecond"`
	Burst             int     `yaml:"burst"`
}

// CountOnly is the attempt-threshold mode (SP 800-204 MS-SS-11): a token is taken
// only when the response's status is one of Statuses. It is a map rather than a
// bare list so that the mode can grow options without a new field name.
type CountOnly struct {
	// Statuses that count as a failed attempt, e.g. [401, 403]. Required.
	Statuses []int `yaml:"statuses"`
}

// Key is what a bucket belongs to. It is written as a word or a one-field map:
//
//	key: clientIP
//	key: {header: X-API-Key}
//	key: {subject: {}}        # the authenticated caller (issuer and subject)
//	key: {claim: tenant.id}   # a claim of the authenticated caller
type Key struct {
	ClientIP bool
	Header   string
	Subject  bool
	Claim    string
}

// keyForms is how every decoding error about a key says what is allowed.
const keyForms = `use clientIP, {header: NAME}, {subject: {}} or {claim: PATH}`

// UnmarshalYAML reads the two forms of Key and names the position of a mistake.
func (k *Key) UnmarshalYAML(n ast.Node) error {
	switch v := n.(type) {
	case *ast.StringNode:
		if v.Value != "clientIP" {
			return nodeError(n, fmt.Sprintf("%q is not a key: %s", v.Value, keyForms))
		}
		*k = Key{ClientIP: true}
		return nil
	case *ast.MappingNode:
		if len(v.Values) != 1 {
			return nodeError(n, "a key has exactly one of header, subject and claim")
		}
		return k.field(v.Values[0])
	case *ast.MappingValueNode:
		return k.field(v)
	}
	return nodeError(n, fmt.Sprintf("%s is not a key: %s", n.String(), keyForms))
}

func (k *Key) field(mv *ast.MappingValueNode) error {
	name := mv.Key.String()
	switch name {
	case "subject":
		// {} leaves room for options (a claim to use instead of sub, say) without
		// changing the form.
		if m, ok := mv.Value.(*ast.MappingNode); !ok || len(m.Values) > 0 {
			return nodeError(mv.Value, "subject: takes no options: write {subject: {}}")
		}
		*k = Key{Subject: true}
		return nil
	case "header", "claim":
	case "apiKey":
		return nodeError(mv.Key, "unknown key source \"apiKey\": use {header: NAME}; header values are kept only as keyed digests, never in clear")
	default:
		return nodeError(mv.Key, fmt.Sprintf("unknown key source %q: use header, subject or claim", name))
	}
	s, ok := mv.Value.(*ast.StringNode)
	if !ok {
		return nodeError(mv.Value, fmt.Sprintf("%s: want a name, got %s", name, mv.Value.String()))
	}
	if s.Value == "" {
		return nodeError(mv.Value, name+": a name is required")
	}
	if name == "header" {
		*k = Key{Header: s.Value}
	} else {
		*k = Key{Claim: s.Value}
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
	l := &limiter{now: time.Now, digest: newDigester(), route: b.Route, events: b.Events}

	l.plans = []plan{checkRate("", cfg.RequestsPerSecond, cfg.Burst, fail)}
	checkKey(l, cfg, fail)
	checkPlans(l, cfg, fail)
	checkCountOnly(l, cfg, fail)

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
	if l.counted != nil {
		log := b.Logger
		if log == nil {
			log = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		l.log = log.With("filter", Type, "route", b.Route)
		l.logLines = rate.NewLimiter(logLinesPerSecond, logLinesPerSecond)
	}
	l.table = newTable(maxKeys)
	l.shared = newEntry(0, &l.plans[0])
	return l, nil
}

// checkKey sets the key mode, the missing-key policy and the address grouping.
func checkKey(l *limiter, cfg Config, fail func(string, string, ...any)) {
	switch k := cfg.Key; {
	case k.Subject:
		l.mode, l.keyName = bySubject, "subject"
	case k.Claim != "":
		l.mode, l.claim, l.keyName = byClaim, k.Claim, "claim"
	case k.Header != "":
		if !httpguts.ValidHeaderFieldName(k.Header) {
			fail("key.header", "%q is not a header name", k.Header)
		}
		l.mode, l.header, l.keyName = byHeader, textproto.CanonicalMIMEHeaderKey(k.Header), "header"
	default: // clientIP, written or not
		l.mode, l.keyName = byClientIP, "clientIP"
	}
	switch cfg.MissingKey {
	case "", MissingShared:
	case MissingRefuse:
		l.refuseMissing = true
	default:
		fail("missingKey", "%q is not one of %s and %s", cfg.MissingKey, MissingShared, MissingRefuse)
	}
	if cfg.MissingKey != "" && l.mode == byClientIP {
		fail("missingKey", "only applies to keys that can be missing ({header: NAME}, {subject: {}}, {claim: PATH}); a client address never is")
	}

	l.v4Bits, l.v6Bits = DefaultIPv4PrefixLength, DefaultIPv6PrefixLength
	prefixLength := func(field string, p *int, lo, hi int, dst *int) {
		if p == nil {
			return
		}
		switch {
		case l.mode != byClientIP:
			fail(field, "only applies to key: clientIP")
		case *p < lo || *p > hi:
			fail(field, "%d is out of range (%d to %d)", *p, lo, hi)
		default:
			*dst = *p
		}
	}
	prefixLength("ipv4PrefixLength", cfg.IPv4PrefixLength, MinIPv4PrefixLength, 32, &l.v4Bits)
	prefixLength("ipv6PrefixLength", cfg.IPv6PrefixLength, MinIPv6PrefixLength, 128, &l.v6Bits)
}

// checkPlans checks the plans and how they are chosen.
func checkPlans(l *limiter, cfg Config, fail func(string, string, ...any)) {
	switch {
	case cfg.PlanHeader != "" && cfg.PlanClaim != "":
		fail("planClaim", "planHeader is set too: plans are chosen by one of them (a claim is signed, a header is whatever reached the gateway)")
	case cfg.PlanHeader != "":
		if !httpguts.ValidHeaderFieldName(cfg.PlanHeader) {
			fail("planHeader", "%q is not a header name", cfg.PlanHeader)
		}
		l.planHeader = textproto.CanonicalMIMEHeaderKey(cfg.PlanHeader)
		if len(cfg.Plans) == 0 {
			fail("planHeader", "set, but there are no plans to choose from")
		}
	case cfg.PlanClaim != "":
		l.planClaim = cfg.PlanClaim
		if len(cfg.Plans) == 0 {
			fail("planClaim", "set, but there are no plans to choose from")
		}
	case len(cfg.Plans) > 0 && l.mode != byHeader:
		fail("plans", "need planHeader, planClaim, or key: {header: NAME} (plans then match key prefixes)")
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
	if l.mode == byHeader && l.planHeader == "" && l.planClaim == "" {
		for i := 1; i < len(l.plans); i++ {
			l.prefixes = append(l.prefixes, int32(i))
		}
		// Longest first, so that "gold_eu_" wins over "gold_" for "gold_eu_123".
		slices.SortStableFunc(l.prefixes, func(a, b int32) int {
			return cmp.Compare(len(l.plans[b].name), len(l.plans[a].name))
		})
	}
}

// checkCountOnly checks the attempt-threshold mode's statuses.
func checkCountOnly(l *limiter, cfg Config, fail func(string, string, ...any)) {
	if cfg.CountOnly == nil {
		return
	}
	if len(cfg.CountOnly.Statuses) == 0 {
		fail("countOnly.statuses", "required, at least one status (401 and 403 for a login route)")
		return
	}
	l.counted = make([]int, 0, len(cfg.CountOnly.Statuses))
	for i, s := range cfg.CountOnly.Statuses {
		field := "countOnly.statuses[" + strconv.Itoa(i) + "]"
		switch {
		case s < 100 || s > 599:
			fail(field, "%d is not an HTTP status (100 to 599)", s)
		case slices.Contains(l.counted, s):
			fail(field, "%d is listed twice", s)
		default:
			l.counted = append(l.counted, s)
		}
	}
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
