package headers_test

import (
	"fmt"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	_ "github.com/portcullis/portcullis/gateway/filters/headers"
)

// build builds a headers filter with cfg as its config (see filtertest.Build).
func build(t testing.TB, cfg string) (filter.Filter, error) {
	t.Helper()
	return filtertest.Build(t, "headers", cfg)
}

func mustBuild(t testing.TB, cfg string) filter.Filter {
	t.Helper()
	return filtertest.MustBuild(t, "headers", cfg)
}

// line returns the line in filters.yaml of line n (1-based) of a config snippet.
func line(n int) int { return filtertest.Line("headers", n) }

func TestRegistered(t *testing.T) { filtertest.Registered(t, "headers") }

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
			filtertest.CheckError(t, err, tt.want)
		})
	}
}

// TestREADMEExample keeps the README's examples honest: each must load and build.
func TestREADMEExample(t *testing.T) {
	filtertest.READMEExample(t, filtertest.WithClusters("api-v1"))
}
