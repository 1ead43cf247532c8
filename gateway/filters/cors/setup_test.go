package cors_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	_ "github.com/portcullis/portcullis/gateway/filters/cors"
)

// docPrefix is a valid Listener, Cluster and Route whose only rule carries one cors
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
        - type: cors
          config:
`

// line returns the line in filters.yaml of line n (1-based) of a config snippet.
func line(n int) int { return strings.Count(docPrefix, "\n") + n }

// build parses the document with cfg as the filter's config and runs the registered
// factory on it, the way the snapshot compiler does. log may be nil.
func build(t testing.TB, cfg string, log *slog.Logger) (filter.Filter, error) {
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
	return factory(filter.Build{Config: spec.Config, Route: "default/r#0", Logger: log})
}

func mustBuild(t testing.TB, cfg string, log *slog.Logger) filter.Filter {
	t.Helper()
	f, err := build(t, cfg, log)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return f
}

// captured is a logger writing JSON lines at level and above into a buffer.
func captured(level slog.Level) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level})), &buf
}

func TestRegistered(t *testing.T) {
	if !slices.Contains(filter.Types(), "cors") {
		t.Fatalf("cors is not registered: %v", filter.Types())
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		want []string // substrings of the error; empty means the config is accepted
	}{
		{name: "exact origins", cfg: `allowedOrigins: ["https://app.example.com", "http://localhost:3000", "http://127.0.0.1:8080", "http://[::1]:5173"]`},
		{name: "label pattern", cfg: `allowedOrigins: ["https://*.example.com", "https://*.eu.example.com:8443"]`},
		{name: "any origin without credentials", cfg: `allowedOrigins: ["*"]` + "\nexposedHeaders: [\"*\"]"},
		{name: "upper case is normalised", cfg: `allowedOrigins: ["HTTPS://App.Example.COM"]`},
		{name: "custom scheme", cfg: `allowedOrigins: ["capacitor://localhost", "chrome-extension://abcdef"]`},
		{name: "null written exactly", cfg: `allowedOrigins: ["null"]`},
		{name: "every field", cfg: `
allowedOrigins: ["https://app.example.com"]
allowedMethods: [GET, POST, PATCH]
allowedHeaders: [Authorization, Content-Type]
exposedHeaders: [X-Request-Id]
allowCredentials: true
maxAge: 10m
allowPrivateNetwork: true`},
		{name: "max age zero", cfg: "allowedOrigins: [\"https://a.example.com\"]\nmaxAge: 0s"},

		// Decoding errors: positioned at their line.
		{name: "unknown field", cfg: "allowedOrigins: [\"https://a.example.com\"]\nallowedOrigin: [\"https://b.example.com\"]",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2)), "allowedOrigin"}},
		{name: "max age without unit", cfg: "allowedOrigins: [\"https://a.example.com\"]\nmaxAge: 600",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2)), "not a duration"}},
		{name: "credentials not a bool", cfg: "allowedOrigins: [\"https://a.example.com\"]\nallowCredentials: sometimes",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2))}},
		{name: "origins not a list", cfg: "allowedOrigins:\n  first: https://a.example.com",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2))}},

		// Unsafe or broken configs, each with its field and reason.
		{name: "no origins", cfg: "allowCredentials: false", want: []string{"allowedOrigins: required"}},
		{name: "wildcard with credentials", cfg: "allowedOrigins: [\"*\"]\nallowCredentials: true",
			want: []string{"allowedOrigins[0]", `"*" cannot be combined with allowCredentials`}},
		{name: "wildcard beside others", cfg: `allowedOrigins: ["https://a.example.com", "*"]`,
			want: []string{"allowedOrigins[1]", "list it alone"}},
		{name: "wildcard inside a label", cfg: `allowedOrigins: ["https://a*.example.com"]`,
			want: []string{"allowedOrigins[0]", "not a whole DNS label"}},
		{name: "wildcard glued to the domain", cfg: `allowedOrigins: ["https://*example.com"]`,
			want: []string{"allowedOrigins[0]", "not a whole DNS label"}},
		{name: "wildcard not leftmost", cfg: `allowedOrigins: ["https://api.*.example.com"]`,
			want: []string{"allowedOrigins[0]", "not a whole DNS label"}},
		{name: "two wildcards", cfg: `allowedOrigins: ["https://*.*.example.com"]`,
			want: []string{"allowedOrigins[0]", "more than one wildcard"}},
		{name: "wildcard over a TLD", cfg: `allowedOrigins: ["https://*.com"]`,
			want: []string{"allowedOrigins[0]", "top-level domain"}},
		{name: "wildcard scheme", cfg: `allowedOrigins: ["*://app.example.com"]`,
			want: []string{"allowedOrigins[0]", "not an origin"}},
		{name: "wildcard over an IP", cfg: `allowedOrigins: ["http://*.0.0.1"]`,
			want: []string{"allowedOrigins[0]", "not a DNS name"}},
		{name: "null not exact", cfg: `allowedOrigins: ["NULL"]`,
			want: []string{"allowedOrigins[0]", `exactly as "null"`}},
		{name: "no scheme", cfg: `allowedOrigins: ["app.example.com"]`,
			want: []string{"allowedOrigins[0]", "not an origin: want scheme://host[:port]"}},
		{name: "trailing slash", cfg: `allowedOrigins: ["https://app.example.com/"]`,
			want: []string{"allowedOrigins[0]", "path"}},
		{name: "path", cfg: `allowedOrigins: ["https://app.example.com/app"]`,
			want: []string{"allowedOrigins[0]", "path"}},
		{name: "user info", cfg: `allowedOrigins: ["https://me@app.example.com"]`,
			want: []string{"allowedOrigins[0]", "not an origin"}},
		{name: "bad port", cfg: `allowedOrigins: ["https://app.example.com:99999"]`,
			want: []string{"allowedOrigins[0]", "port"}},
		{name: "empty port", cfg: `allowedOrigins: ["https://app.example.com:"]`,
			want: []string{"allowedOrigins[0]", "port"}},
		{name: "default port", cfg: `allowedOrigins: ["https://app.example.com:443"]`,
			want: []string{"allowedOrigins[0]", "default port 443", "write https://app.example.com"}},
		{name: "IPv6 without brackets", cfg: `allowedOrigins: ["http://::1"]`,
			want: []string{"allowedOrigins[0]", "brackets"}},
		{name: "bad host", cfg: `allowedOrigins: ["https://app..example.com"]`,
			want: []string{"allowedOrigins[0]", "neither a DNS name nor an IP address"}},
		{name: "method wildcard", cfg: "allowedOrigins: [\"https://a.example.com\"]\nallowedMethods: [\"*\"]",
			want: []string{"allowedMethods[0]", "list them"}},
		{name: "method lower case", cfg: "allowedOrigins: [\"https://a.example.com\"]\nallowedMethods: [GET, delete]",
			want: []string{"allowedMethods[1]", `write "DELETE"`}},
		{name: "bad header name", cfg: "allowedOrigins: [\"https://a.example.com\"]\nallowedHeaders: [\"x token\"]",
			want: []string{"allowedHeaders[0]", "not a header name"}},
		{name: "expose every header with credentials", cfg: "allowedOrigins: [\"https://a.example.com\"]\nallowCredentials: true\nexposedHeaders: [\"*\"]",
			want: []string{"exposedHeaders[0]", "without credentials"}},
		{name: "max age fraction", cfg: "allowedOrigins: [\"https://a.example.com\"]\nmaxAge: 1500ms",
			want: []string{"maxAge", "whole number of seconds"}},
		{name: "every error is reported", cfg: "allowedOrigins: [\"*\", \"https://a*.example.com\"]\nallowCredentials: true\nmaxAge: 1.5s",
			want: []string{"allowedOrigins[0]", "allowedOrigins[1]", "maxAge"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.cfg, nil)
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

// TestNullOriginWarns: "null" is allowed only when written exactly, and then with a
// warning at build time, since any page can make a request with a null origin.
func TestNullOriginWarns(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		warn bool
	}{
		{"null listed", `allowedOrigins: ["https://a.example.com", "null"]`, true},
		{"null not listed", `allowedOrigins: ["https://a.example.com"]`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := captured(slog.LevelWarn)
			mustBuild(t, tt.cfg, log)
			got := strings.Contains(buf.String(), `"level":"WARN"`) && strings.Contains(buf.String(), "null")
			if got != tt.warn {
				t.Errorf("warning logged: %v, want %v (log: %s)", got, tt.warn, buf)
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
  name: api-v1
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
