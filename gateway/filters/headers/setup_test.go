package headers_test

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	_ "github.com/portcullis/portcullis/gateway/filters/headers"
)

// docPrefix is a valid Listener, Cluster and Route whose only rule carries one
// headers filter; the config under test is appended, indented, as its config.
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
        - type: headers
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
	if !slices.Contains(filter.Types(), "headers") {
		t.Fatalf("headers is not registered: %v", filter.Types())
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		want []string // substrings of the error; empty means the config is accepted
	}{
		{name: "request set only", cfg: "request:\n  set: {X-A: b}"},
		{name: "response remove only", cfg: "response:\n  remove: [Server]"},
		{name: "all ops both sides", cfg: "request:\n  set: {X-A: a}\n  add: {X-B: b}\n  remove: [X-C]\nresponse:\n  set: {X-A: a}\n  add: {X-B: b}\n  remove: [X-C]"},
		{name: "literal percent", cfg: "request:\n  set: {X-A: \"50% and %%{host}\"}"},
		{name: "every variable", cfg: "request:\n  set: {X-A: \"%{client_ip} %{host} %{path} %{method} %{scheme}\"}"},

		{name: "no config", cfg: "", want: []string{"at least one of request and response"}},
		{name: "empty ops", cfg: "request: {}\nresponse: {}", want: []string{"at least one of request and response"}},
		{name: "unknown top-level field", cfg: "request:\n  set: {X-A: b}\nreqeust:\n  set: {X-B: c}",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3)), "reqeust"}},
		{name: "unknown nested field", cfg: "request:\n  set: {X-A: b}\n  sett: {X-B: c}",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(3)), "sett"}},
		{name: "remove is not a list", cfg: "request:\n  remove: X-A",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2))}},
		{name: "set is not a map", cfg: "response:\n  set: [X-A]",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2))}},
		{name: "hop-by-hop set", cfg: "request:\n  set: {Connection: close}",
			want: []string{"request.set.Connection", "hop-by-hop"}},
		{name: "hop-by-hop remove lower case", cfg: "response:\n  remove: [transfer-encoding]",
			want: []string{"response.remove[0]", `"transfer-encoding"`, "hop-by-hop"}},
		{name: "te and trailer", cfg: "request:\n  add: {TE: trailers, Trailer: x}",
			want: []string{"request.add.TE", "request.add.Trailer"}},
		{name: "upgrade keep-alive proxy-connection", cfg: "request:\n  remove: [Upgrade, Keep-Alive, Proxy-Connection]",
			want: []string{"request.remove[0]", "request.remove[1]", "request.remove[2]"}},
		{name: "host", cfg: "request:\n  set: {host: example.com}",
			want: []string{"request.set.host", "rewrite.host"}},
		{name: "content-length", cfg: "response:\n  set: {Content-Length: \"0\"}",
			want: []string{"response.set.Content-Length", "framing"}},
		{name: "invalid name", cfg: "request:\n  set: {\"X A\": b}",
			want: []string{"request.set.X A", "not a valid header name"}},
		{name: "pseudo header", cfg: "request:\n  remove: [\":path\"]",
			want: []string{"request.remove[0]", "not a valid header name"}},
		{name: "CRLF in value", cfg: "request:\n  set: {X-A: \"a\\r\\nX-Injected: 1\"}",
			want: []string{"request.set.X-A", "control character"}},
		{name: "NUL in value", cfg: "response:\n  add: {X-A: \"a\\0b\"}",
			want: []string{"response.add.X-A", "control character"}},
		{name: "unknown variable", cfg: "request:\n  set: {X-A: \"%{request_id}\"}",
			want: []string{"request.set.X-A", "unknown variable %{request_id}"}},
		{name: "unclosed variable", cfg: "request:\n  set: {X-A: \"%{host\"}",
			want: []string{"request.set.X-A", "not closed"}},
		{name: "same name in set and remove", cfg: "request:\n  set: {X-A: a}\n  remove: [x-a]",
			want: []string{"request.set.X-A", "already changed by request.remove[0]"}},
		{name: "same name twice in remove", cfg: "response:\n  remove: [X-A, X-A]",
			want: []string{"response.remove[1]"}},
		{name: "same name differently cased in set", cfg: "request:\n  set: {X-A: a, x-a: b}",
			want: []string{"request.set.x-a", "already changed by request.set.X-A"}},
		{name: "every error is reported", cfg: "request:\n  set: {Connection: x}\nresponse:\n  remove: [Host]",
			want: []string{"request.set.Connection", "response.remove[0]"}},
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
	for _, c := range []string{"api-v1"} {
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
