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

		// Decoding errors: positioned at their line.
		{name: "unknown field", cfg: base + "brust: 5",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3)), "brust"}},
		{name: "rate not a number", cfg: "requestsPerSecond: fast\nburst: 1",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(1))}},
		{name: "burst not a number", cfg: "requestsPerSecond: 1\nburst: lots",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2))}},
		{name: "key word unknown", cfg: base + "key: clientAddress",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3)), `"clientAddress" is not a key`, "clientIP, {header: NAME} or {claim: NAME}"}},
		{name: "key source unknown", cfg: base + "key:\n  cookie: session",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(4)), `unknown key source "cookie"`}},
		{name: "key with two sources", cfg: base + "key: {header: X-API-Key, claim: sub}",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3)), "exactly one of header and claim"}},
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
		{name: "claim key not supported yet", cfg: base + "key: {claim: sub}", want: []string{"key.claim", "not supported yet"}},
		{name: "bad key header", cfg: base + "key: {header: \"x api key\"}", want: []string{"key.header", "not a header name"}},
		{name: "missingKey unknown", cfg: base + "key: {header: X-API-Key}\nmissingKey: drop", want: []string{"missingKey", `"drop"`}},
		{name: "missingKey with clientIP", cfg: base + "missingKey: refuse", want: []string{"missingKey", "only applies to key: {header: NAME}"}},
		{name: "plans without a way to choose", cfg: base + "plans:\n  gold: {requestsPerSecond: 100, burst: 200}",
			want: []string{"plans: need planHeader"}},
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
		{name: "every error is reported", cfg: "requestsPerSecond: 0\nburst: 0\nkey: {claim: sub}",
			want: []string{"requestsPerSecond", "burst", "key.claim"}},
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
	filtertest.READMEExample(t, filtertest.WithClusters("partner-api"))
}
