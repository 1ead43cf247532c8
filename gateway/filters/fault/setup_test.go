package fault_test

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	_ "github.com/portcullis/portcullis/gateway/filters/fault"
)

// docPrefix is a valid Listener, Cluster and Route whose only rule carries one fault
// filter; the config under test is appended, indented, as its config.
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
        - type: fault
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
	if !slices.Contains(filter.Types(), "fault") {
		t.Fatalf("fault is not registered: %v", filter.Types())
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		want []string // substrings of the error; empty means the config is accepted
	}{
		{name: "delay only", cfg: "delay: {duration: 100ms, percent: 10}"},
		{name: "abort only", cfg: "abort: {status: 503, percent: 5}"},
		{name: "both with header", cfg: "delay: {duration: 1s}\nabort: {status: 500, grpcStatus: 14, percent: 0.25}\nheader: x-fault"},
		{name: "percent bounds", cfg: "delay: {duration: 1ms, percent: 0}\nabort: {status: 599, percent: 100}"},

		{name: "no config", cfg: "", want: []string{"at least one of delay and abort"}},
		{name: "header alone", cfg: "header: x-fault", want: []string{"at least one of delay and abort"}},
		{name: "unknown field", cfg: "delay: {duration: 1s}\nabrot: {status: 503}",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2)), "abrot"}},
		{name: "unknown nested field", cfg: "abort:\n  status: 503\n  precent: 5",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3)), "precent"}},
		{name: "duration without unit", cfg: "delay:\n  duration: 100",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2)), "not a duration"}},
		{name: "duration misspelt", cfg: "delay:\n  duration: 100 ms",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2)), "not a duration"}},
		{name: "negative duration", cfg: "delay:\n  duration: -1s",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2))}},
		{name: "percent not a number", cfg: "abort:\n  status: 503\n  percent: ten",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3))}},
		{name: "status not a number", cfg: "abort:\n  status: unavailable",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2))}},

		{name: "delay without duration", cfg: "delay: {percent: 10}", want: []string{"delay.duration", "required"}},
		{name: "zero duration", cfg: "delay: {duration: 0s}", want: []string{"delay.duration"}},
		{name: "delay percent above 100", cfg: "delay: {duration: 1s, percent: 100.5}", want: []string{"delay.percent", "100.5"}},
		{name: "abort percent negative", cfg: "abort: {status: 503, percent: -1}", want: []string{"abort.percent"}},
		{name: "percent NaN", cfg: "abort: {status: 503, percent: .nan}", want: []string{"abort.percent"}},
		{name: "abort without status", cfg: "abort: {percent: 5}", want: []string{"abort.status"}},
		{name: "abort status not an error", cfg: "abort: {status: 200}", want: []string{"abort.status", "200"}},
		{name: "abort status too big", cfg: "abort: {status: 600}", want: []string{"abort.status"}},
		{name: "grpc status OK", cfg: "abort: {status: 503, grpcStatus: 0}", want: []string{"abort.grpcStatus"}},
		{name: "grpc status unknown", cfg: "abort: {status: 503, grpcStatus: 17}", want: []string{"abort.grpcStatus"}},
		{name: "bad header", cfg: "abort: {status: 503}\nheader: \"x fault\"", want: []string{"header", "not a valid header name"}},
		{name: "every error is reported", cfg: "delay: {duration: 1s, percent: 200}\nabort: {status: 42}",
			want: []string{"delay.percent", "abort.status"}},
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
			// Decoding errors come positioned; a *config.Error without a line
			// would reach the user unpositioned, since the compiler keeps it as
			// it is (plain errors it positions at the filter's config).
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
`
	for _, c := range []string{"ratings-v1"} {
		doc += "---\napiVersion: portcullis.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: " + c +
			"\nspec:\n  endpoints:\n    - address: 127.0.0.1:9000\n"
	}
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
