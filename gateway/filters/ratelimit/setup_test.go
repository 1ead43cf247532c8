package ratelimit_test

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	_ "github.com/portcullis/portcullis/gateway/filters/ratelimit"
)

// docPrefix is a valid Listener, Cluster and Route whose only rule carries one
// ratelimit filter; the config under test is appended, indented, as its config.
const docPrefix = `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata:
  name: public
spec:
  address: 127.0.0.1:8080
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata:
  name: backend
spec:
  endpoints:
    - address: 127.0.0.1:9000
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata:
  name: r
spec:
  listeners: [public]
  rules:
    - forward:
        backends:
          - cluster: backend
      filters:
        - type: ratelimit
          config:
`

// line returns the line in filters.yaml of line n (1-based) of a config snippet.
func line(n int) int { return strings.Count(docPrefix, "\n") + n }

// build parses the document with cfg as the filter's config and runs the registered
// factory on it, the way the snapshot compiler does.
func build(t testing.TB, cfg string) (filter.Filter, error) {
	t.Helper()
	var b strings.Builder
	b.WriteString(docPrefix)
	for _, l := range strings.Split(strings.Trim(cfg, "\n"), "\n") {
		b.WriteString("            " + l + "\n")
	}
	set, err := config.Parse("filters.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("the test document does not parse: %v\n%s", err, b.String())
	}
	spec := set.Routes[0].Spec.Rules[0].Filters[0]
	factory, ok := filter.Lookup(spec.Type)
	if !ok {
		t.Fatalf("filter type %q is not registered (have %v)", spec.Type, filter.Types())
	}
	return factory(filter.Build{Config: spec.Config, Route: "default/r#0"})
}

func mustBuild(t testing.TB, cfg string) filter.Filter {
	t.Helper()
	f, err := build(t, cfg)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return f
}

func TestRegistered(t *testing.T) {
	if !slices.Contains(filter.Types(), "ratelimit") {
		t.Fatalf("ratelimit is not registered: %v", filter.Types())
	}
}

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
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error containing %q, got none", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			var ce *config.Error
			if errors.As(err, &ce) && (ce.Line == 0 || ce.File != "filters.yaml") {
				t.Errorf("unpositioned *config.Error: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines; the compiler puts it in one message", err)
			}
		})
	}
}

// TestREADMEExample keeps the README's example honest: it must load and build.
func TestREADMEExample(t *testing.T) {
	md, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(md), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no yaml example")
	}
	doc := example + `---
apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata:
  name: public
spec:
  address: 127.0.0.1:8080
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata:
  name: partner-api
spec:
  endpoints:
    - address: 127.0.0.1:9000
`
	set, err := config.Parse("README.md", []byte(doc))
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	n := 0
	for _, route := range set.Routes {
		for _, rule := range route.Spec.Rules {
			for _, fs := range rule.Filters {
				factory, ok := filter.Lookup(fs.Type)
				if !ok {
					t.Fatalf("the example names unknown filter type %q", fs.Type)
				}
				if _, err := factory(filter.Build{Config: fs.Config, Route: "example"}); err != nil {
					t.Errorf("the example's %s filter does not build: %v", fs.Type, err)
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Error("the example has no filter")
	}
}
