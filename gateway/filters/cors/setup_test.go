package cors_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	_ "github.com/portcullis/portcullis/gateway/filters/cors"
)

// build builds a cors filter with cfg as its config (see filtertest.Build); log may be nil.
func build(t testing.TB, cfg string, log *slog.Logger) (filter.Filter, error) {
	t.Helper()
	return filtertest.Build(t, "cors", cfg, filtertest.WithBuild(func(b *filter.Build) { b.Logger = log }))
}

func mustBuild(t testing.TB, cfg string, log *slog.Logger) filter.Filter {
	t.Helper()
	return filtertest.MustBuild(t, "cors", cfg, filtertest.WithBuild(func(b *filter.Build) { b.Logger = log }))
}

// line returns the line in filters.yaml of line n (1-based) of a config snippet.
func line(n int) int { return filtertest.Line("cors", n) }

// captured is a logger writing JSON lines at level and above into a buffer.
func captured(level slog.Level) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level})), &buf
}

func TestRegistered(t *testing.T) { filtertest.Registered(t, "cors") }

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
		{name: "wildcard over a public suffix", cfg: `allowedOrigins: ["https://*.co.uk"]`,
			want: []string{"allowedOrigins[0]", `public suffix "co.uk"`}},
		{name: "wildcard over a hosting suffix", cfg: `allowedOrigins: ["https://*.github.io"]`,
			want: []string{"allowedOrigins[0]", `public suffix "github.io"`}},
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
			filtertest.CheckError(t, err, tt.want)
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

// TestREADMEExample keeps the README's examples honest: each must load and build.
func TestREADMEExample(t *testing.T) {
	filtertest.READMEExample(t, filtertest.WithClusters("api-v1"))
}
