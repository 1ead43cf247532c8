package fault_test

import (
	"fmt"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	_ "github.com/portcullis/portcullis/gateway/filters/fault"
)

// build builds a fault filter with cfg as its config (see filtertest.Build).
func build(t testing.TB, cfg string) (filter.Filter, error) {
	t.Helper()
	return filtertest.Build(t, "fault", cfg)
}

func mustBuild(t testing.TB, cfg string) filter.Filter {
	t.Helper()
	return filtertest.MustBuild(t, "fault", cfg)
}

// line returns the line in filters.yaml of line n (1-based) of a config snippet.
func line(n int) int { return filtertest.Line("fault", n) }

func TestRegistered(t *testing.T) { filtertest.Registered(t, "fault") }

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
			filtertest.CheckError(t, err, tt.want)
		})
	}
}

// TestREADMEExample keeps the README's examples honest: each must load and build.
func TestREADMEExample(t *testing.T) {
	filtertest.READMEExample(t, filtertest.WithClusters("ratings-v1"))
}
