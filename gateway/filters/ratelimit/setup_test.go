package ratelimit_test

import (
	"fmt"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	_ "github.com/portcullis/portcullis/gateway/filters/ratelimit"
)

// build builds a ratelimit filter with cfg as its config (see filtertest.Build).
func build(t testing.TB, cfg string) (filter.Filter, error) {
	t.Helper()
	return filtertest.Build(t, "ratelimit", cfg)
}

func mustBuild(t testing.TB, cfg string) filter.Filter {
	t.Helper()
	return filtertest.MustBuild(t, "ratelimit", cfg)
}

// line returns the line in filters.yaml of line n (1-based) of a config snippet.
func line(n int) int { return filtertest.Line("ratelimit", n) }

func TestRegistered(t *testing.T) { filtertest.Registered(t, "ratelimit") }

func TestConfigErrors(t *testing.T) {
	const base = "requestsPerSecond: 10\nburst: 20\n"
	tests := []struct {
		name string
		cfg  string
		want []string // substrings of the error; empty means the config is accepted
	}{
		{name: "minimal", cfg: base},
		{name: "fractional rate", cfg: "requestsPerSecond: 0.5\nburst: 1"},
		{name: "clientIP written", cfg: base + "key: clientIP"},
		{name: "header key, flow form", cfg: base + "key: {header: X-API-Key}\nmissingKey: refuse"},
		{name: "header key, block form", cfg: base + "key:\n  header: X-API-Key\nmissingKey: shared"},
		{name: "plans by header", cfg: base + "planHeader: X-Plan\nplans:\n  gold: {requestsPerSecond: 100, burst: 200}\n  free: {requestsPerSecond: 1, burst: 5}"},
		{name: "plans by key prefix", cfg: base + "key: {header: X-API-Key}\nplans:\n  gold_: {requestsPerSecond: 100, burst: 200}"},
		{name: "plans by header with clientIP", cfg: base + "planHeader: X-Plan\nplans:\n  gold: {requestsPerSecond: 100, burst: 200}"},
		{name: "maxKeys", cfg: base + "maxKeys: 16"},
		{name: "subject key, flow form", cfg: base + "key: {subject: {}}\nmissingKey: refuse"},
		{name: "subject key, block form", cfg: base + "key:\n  subject: {}"},
		{name: "claim key", cfg: base + "key: {claim: tenant.id}\nmissingKey: shared"},
		{name: "claim key naming a URI claim", cfg: base + "key: {claim: \"https://example.com/tenant\"}"},
		{name: "plans by claim", cfg: base + "key: {subject: {}}\nplanClaim: plan\nplans:\n  pro: {requestsPerSecond: 100, burst: 200}"},
		{name: "plans by claim with clientIP", cfg: base + "planClaim: org.plan\nplans:\n  pro: {requestsPerSecond: 100, burst: 200}"},
		{name: "countOnly", cfg: "requestsPerSecond: 0.1\nburst: 5\ncountOnly: {statuses: [401, 403]}"},
		{name: "countOnly with a header key", cfg: base + "key: {header: X-Login}\ncountOnly:\n  statuses: [401]"},
		{name: "prefix lengths", cfg: base + "ipv4PrefixLength: 24\nipv6PrefixLength: 48"},
		{name: "prefix lengths at their bounds", cfg: base + "key: clientIP\nipv4PrefixLength: 8\nipv6PrefixLength: 128"},

		// Decoding errors: positioned at their line.
		{name: "unknown field", cfg: base + "brust: 5",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3)), "brust"}},
		{name: "rate not a number", cfg: "requestsPerSecond: fast\nburst: 1",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(1))}},
		{name: "burst not a number", cfg: "requestsPerSecond: 1\nburst: lots",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2))}},
		{name: "key word unknown", cfg: base + "key: clientAddress",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3)), `"clientAddress" is not a key`, "clientIP, {header: NAME}, {subject: {}} or {claim: PATH}"}},
		{name: "key source unknown", cfg: base + "key:\n  cookie: session",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(4)), `unknown key source "cookie"`}},
		{name: "key with two sources", cfg: base + "key: {header: X-API-Key, claim: sub}",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3)), "exactly one of header, subject and claim"}},
		{name: "subject with options", cfg: base + "key:\n  subject: {claim: email}",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(4)), "subject: takes no options"}},
		{name: "subject as a word", cfg: base + "key: {subject: yes}",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3)), "subject: takes no options"}},
		{name: "apiKey is the header key", cfg: base + "key:\n  apiKey: {header: X-API-Key}",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(4)), `unknown key source "apiKey"`, "use {header: NAME}"}},
		{name: "claim empty", cfg: base + "key:\n  claim: \"\"",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(4)), "claim: a name is required"}},
		{name: "countOnly unknown field", cfg: base + "countOnly:\n  status: [401]",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(4)), "status"}},
		{name: "countOnly status not a number", cfg: base + "countOnly: {statuses: [unauthorized]}",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3))}},
		{name: "key header not a string", cfg: base + "key:\n  header: [a, b]",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(4)), "want a name"}},
		{name: "key header empty", cfg: base + "key:\n  header: \"\"",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(4)), "a name is required"}},
		{name: "plan not a map", cfg: base + "planHeader: X-Plan\nplans:\n  gold: 100",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(5))}},
		{name: "plan unknown field", cfg: base + "planHeader: X-Plan\nplans:\n  gold: {rps: 100, burst: 1}",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(5)), "rps"}},

		// Checks after decoding.
		{name: "no config", cfg: "", want: []string{"requestsPerSecond: required", "burst: required"}},
		{name: "zero rate", cfg: "requestsPerSecond: 0\nburst: 5", want: []string{"requestsPerSecond", "more than zero"}},
		{name: "negative rate", cfg: "requestsPerSecond: -1\nburst: 5", want: []string{"requestsPerSecond"}},
		{name: "NaN rate", cfg: "requestsPerSecond: .nan\nburst: 5", want: []string{"requestsPerSecond"}},
		{name: "infinite rate", cfg: "requestsPerSecond: .inf\nburst: 5", want: []string{"requestsPerSecond"}},
		{name: "zero burst", cfg: "requestsPerSecond: 1\nburst: 0", want: []string{"burst: required, at least 1"}},
		{name: "bad key header", cfg: base + "key: {header: \"x api key\"}", want: []string{"key.header", "not a header name"}},
		{name: "missingKey unknown", cfg: base + "key: {header: X-API-Key}\nmissingKey: drop", want: []string{"missingKey", `"drop"`}},
		{name: "missingKey with clientIP", cfg: base + "missingKey: refuse", want: []string{"missingKey: only applies to keys that can be missing"}},
		{name: "plans without a way to choose", cfg: base + "plans:\n  gold: {requestsPerSecond: 100, burst: 200}",
			want: []string{"plans: need planHeader, planClaim, or key: {header: NAME}"}},
		{name: "planHeader and planClaim", cfg: base + "planHeader: X-Plan\nplanClaim: plan\nplans:\n  gold: {requestsPerSecond: 1, burst: 1}",
			want: []string{"planClaim: planHeader is set too"}},
		{name: "planClaim without plans", cfg: base + "key: {subject: {}}\nplanClaim: plan", want: []string{"planClaim: set, but there are no plans"}},
		{name: "countOnly without statuses", cfg: base + "countOnly: {}", want: []string{"countOnly.statuses: required"}},
		{name: "countOnly with an empty list", cfg: base + "countOnly: {statuses: []}", want: []string{"countOnly.statuses: required"}},
		{name: "countOnly status out of range", cfg: base + "countOnly: {statuses: [401, 600, 99]}",
			want: []string{"countOnly.statuses[1]: 600 is not an HTTP status", "countOnly.statuses[2]: 99"}},
		{name: "countOnly status twice", cfg: base + "countOnly: {statuses: [401, 403, 401]}",
			want: []string{"countOnly.statuses[2]: 401 is listed twice"}},
		{name: "ipv6PrefixLength too short", cfg: base + "ipv6PrefixLength: 16", want: []string{"ipv6PrefixLength: 16 is out of range (32 to 128)"}},
		{name: "ipv6PrefixLength too long", cfg: base + "ipv6PrefixLength: 129", want: []string{"ipv6PrefixLength: 129 is out of range"}},
		{name: "ipv4PrefixLength too short", cfg: base + "ipv4PrefixLength: 7", want: []string{"ipv4PrefixLength: 7 is out of range (8 to 32)"}},
		{name: "ipv4PrefixLength too long", cfg: base + "ipv4PrefixLength: 33", want: []string{"ipv4PrefixLength: 33 is out of range"}},
		{name: "prefix length with a header key", cfg: base + "key: {header: X-API-Key}\nipv4PrefixLength: 24",
			want: []string{"ipv4PrefixLength: only applies to key: clientIP"}},
		{name: "prefix length with a subject key", cfg: base + "key: {subject: {}}\nipv6PrefixLength: 64",
			want: []string{"ipv6PrefixLength: only applies to key: clientIP"}},
		{name: "planHeader without plans", cfg: base + "planHeader: X-Plan", want: []string{"planHeader", "no plans"}},
		{name: "bad planHeader", cfg: base + "planHeader: \"x plan\"\nplans:\n  gold: {requestsPerSecond: 1, burst: 1}",
			want: []string{"planHeader", "not a header name"}},
		{name: "plan without burst", cfg: base + "planHeader: X-Plan\nplans:\n  gold: {requestsPerSecond: 100}",
			want: []string{"plans.gold.burst"}},
		{name: "plan with zero rate", cfg: base + "planHeader: X-Plan\nplans:\n  gold: {requestsPerSecond: 0, burst: 1}",
			want: []string{"plans.gold.requestsPerSecond"}},
		{name: "empty plan name", cfg: base + "planHeader: X-Plan\nplans:\n  \"\": {requestsPerSecond: 1, burst: 1}",
			want: []string{"plans: a plan name must not be empty"}},
		{name: "maxKeys too small", cfg: base + "maxKeys: 10", want: []string{"maxKeys", "10 is out of range"}},
		{name: "maxKeys too big", cfg: base + "maxKeys: 20000000", want: []string{"maxKeys"}},
		{name: "every error is reported", cfg: "requestsPerSecond: 0\nburst: 0\nplanHeader: X-Plan\nplanClaim: plan\nipv6PrefixLength: 200\ncountOnly: {statuses: [1]}",
			want: []string{"requestsPerSecond", "burst", "planClaim", "ipv6PrefixLength", "countOnly.statuses[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.cfg)
			filtertest.CheckError(t, err, tt.want)
		})
	}
}

// TestREADMEExample keeps the README's examples honest: each must load and build.
func TestREADMEExample(t *testing.T) {
	filtertest.READMEExample(t, filtertest.WithClusters("partner-api", "api", "accounts"))
}
