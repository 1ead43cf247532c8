package authz_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter/filtertest"
)

// line returns the line in filters.yaml of line n (1-based) of a config snippet.
func line(n int) int { return filtertest.Line("authz", n) }

func TestRegistered(t *testing.T) { filtertest.Registered(t, "authz") }

func TestConfigErrors(t *testing.T) {
	// rule is a one-rule config with the given lines under "- ".
	rule := func(lines ...string) string {
		return "rules:\n  - " + strings.Join(lines, "\n    ")
	}
	many := "rules:\n"
	for i := range 65 {
		many += fmt.Sprintf("  - paths: [/s%d]\n    require: {scopes: {allOf: [s%d]}}\n", i, i)
	}
	tests := []struct {
		name string
		cfg  string
		want []string // substrings of the error; empty means the config is accepted
	}{
		{name: "api rules", cfg: apiRules},
		{name: "every field", cfg: "default: allow\nmode: report\nrealm: r\n" +
			rule("name: n", "methods: [GET, PROPFIND]", "paths: [/a, /b/*, /*]", "require: {authenticated: true, issuers: [x], scopes: {allOf: [a], anyOf: [b]}, claims: [{name: c.d, values: [e]}]}")},
		{name: "explicit deny default", cfg: "default: deny\n" + rule("paths: [/x]", "public: true")},

		{name: "no config", cfg: "", want: []string{"rules: at least one rule"}},
		{name: "unknown field", cfg: rule("paths: [/x]", "public: true", "alow: true"), want: []string{fmt.Sprintf("filters.yaml:%d", line(4)), "alow"}},
		{name: "unknown require field", cfg: rule("paths: [/x]", "require: {scope: [a]}"), want: []string{fmt.Sprintf("filters.yaml:%d", line(3)), "scope"}},
		{name: "bad default", cfg: "default: permit\n" + rule("paths: [/x]", "public: true"), want: []string{"default", `"permit"`}},
		{name: "bad mode", cfg: "mode: audit\n" + rule("paths: [/x]", "public: true"), want: []string{"mode", `"audit"`}},
		{name: "bad realm", cfg: "realm: 'a\"b'\n" + rule("paths: [/x]", "public: true"), want: []string{"realm"}},
		{name: "no effect", cfg: rule("paths: [/x]"), want: []string{"rules[0]: exactly one of require, public: true and deny: true"}},
		{name: "two effects", cfg: rule("paths: [/x]", "public: true", "deny: true"), want: []string{"rules[0]: exactly one"}},
		{name: "require and public", cfg: rule("paths: [/x]", "public: true", "require: {authenticated: true}"), want: []string{"rules[0]: exactly one"}},
		{name: "empty require", cfg: rule("paths: [/x]", "require: {}"), want: []string{"rules[0].require: no condition", "authenticated: true"}},
		{name: "authenticated false", cfg: rule("paths: [/x]", "require: {authenticated: false}"), want: []string{"rules[0].require.authenticated", "public: true"}},
		{name: "no paths", cfg: rule("methods: [GET]", "public: true"), want: []string{"rules[0].paths: at least one"}},
		{name: "relative path", cfg: rule("paths: [x/y]", "public: true"), want: []string{"rules[0].paths[0]", "start with /"}},
		{name: "star inside", cfg: rule("paths: [/a/*/b]", "public: true"), want: []string{"rules[0].paths[0]", "last segment"}},
		{name: "star suffix", cfg: rule("paths: [/a*]", "public: true"), want: []string{"rules[0].paths[0]", "last segment"}},
		{name: "lone star", cfg: rule("paths: ['*']", "public: true"), want: []string{"rules[0].paths[0]"}},
		{name: "query", cfg: rule("paths: [/a?b]", "public: true"), want: []string{"query"}},
		{name: "encoded", cfg: rule("paths: [/a%2Fb]", "public: true"), want: []string{"decoded"}},
		{name: "double slash", cfg: rule("paths: [/a//b]", "public: true"), want: []string{"empty segment"}},
		{name: "dot segment", cfg: rule("paths: [/a/../b]", "public: true"), want: []string{"dot segment"}},
		{name: "path twice", cfg: rule("paths: [/a/*, /a/*]", "public: true"), want: []string{"rules[0].paths[1]", "twice"}},
		{name: "lower-case method", cfg: rule("methods: [get]", "paths: [/a]", "public: true"), want: []string{"rules[0].methods[0]", "case-sensitive", "GET"}},
		{name: "bad method", cfg: rule("methods: [\"GE T\"]", "paths: [/a]", "public: true"), want: []string{"rules[0].methods[0]", "not a method"}},
		{name: "method twice", cfg: rule("methods: [GET, GET]", "paths: [/a]", "public: true"), want: []string{"rules[0].methods[1]", "twice"}},
		{name: "empty issuer", cfg: rule("paths: [/a]", "require: {issuers: [\"\"]}"), want: []string{"rules[0].require.issuers[0]"}},
		{name: "empty scopes", cfg: rule("paths: [/a]", "require: {scopes: {}}"), want: []string{"rules[0].require.scopes: at least one of allOf and anyOf"}},
		{name: "bad scope", cfg: rule("paths: [/a]", "require: {scopes: {anyOf: [ok, \"a b\"]}}"), want: []string{"rules[0].require.scopes.anyOf[1]", `"a b"`}},
		{name: "too many scopes", cfg: many, want: []string{"rules[64].require.scopes.allOf[0]", "more than 64 distinct scopes"}},
		{name: "claim without name", cfg: rule("paths: [/a]", "require: {claims: [{values: [x]}]}"), want: []string{"rules[0].require.claims[0].name"}},
		{name: "claim without values", cfg: rule("paths: [/a]", "require: {claims: [{name: x}]}"), want: []string{"rules[0].require.claims[0].values"}},
		{name: "every error is reported", cfg: "mode: x\n" + rule("paths: [a]", "methods: [get]"),
			want: []string{"mode", "rules[0].paths[0]", "rules[0].methods[0]", "rules[0]: exactly one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.cfg, nil)
			filtertest.CheckError(t, err, tt.want)
		})
	}
}

// TestShadowedRules: a rule that can never apply is an ordering mistake, and a
// config error.
func TestShadowedRules(t *testing.T) {
	tests := []struct {
		name  string
		rules string
		want  string // "" when every rule can apply
	}{
		{"catch-all first", `
  - paths: ["/*"]
    public: true
  - paths: [/admin/*]
    deny: true`, "rules[1]: never applies: every request it matches is matched first by rules[0]"},
		{"exact under prefix", `
  - paths: [/a/*]
    require: {authenticated: true}
  - methods: [GET]
    paths: [/a/b]
    public: true`, "rules[1]: never applies"},
		{"deeper prefix", `
  - methods: [GET, POST]
    paths: [/a/*]
    deny: true
  - name: late
    methods: [POST]
    paths: [/a/b/*]
    public: true`, "rules[1] (late): never applies: every request it matches is matched first by rules[0]"},
		{"covered by two", `
  - paths: [/a/*]
    deny: true
  - paths: [/b]
    deny: true
  - paths: [/a/x, /b]
    public: true`, "matched first by rules[0], rules[1]"},
		{"same exact path", `
  - paths: [/a]
    deny: true
  - paths: [/a]
    public: true`, "rules[1]: never applies"},

		{"more methods later", `
  - methods: [GET]
    paths: [/a/*]
    public: true
  - methods: [GET, POST]
    paths: [/a/b]
    deny: true`, ""},
		{"methods then all methods", `
  - methods: [GET]
    paths: [/a]
    public: true
  - paths: [/a]
    deny: true`, ""},
		{"exact then prefix", `
  - paths: [/a]
    public: true
  - paths: [/a/*]
    deny: true`, ""},
		{"sibling prefix", `
  - paths: [/ab/*]
    public: true
  - paths: [/a/*]
    deny: true`, ""},
		{"one path still reachable", `
  - paths: [/a/*]
    deny: true
  - paths: [/a/x, /c]
    public: true`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, "rules:"+tt.rules, nil)
			if tt.want == "" {
				filtertest.CheckError(t, err, nil)
				return
			}
			filtertest.CheckError(t, err, []string{tt.want})
		})
	}
}

// TestREADMEExamples keeps the README's examples honest: each must load and build.
func TestREADMEExamples(t *testing.T) {
	filtertest.READMEExample(t, filtertest.WithClusters("orders-v1"))
}
