package mirror_test

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	_ "github.com/portcullis/portcullis/gateway/filters/mirror"
)

// shadow adds the Cluster the mirror configs under test copy to.
var shadow = filtertest.WithClusters("shadow-v2")

// line returns the line in filters.yaml of line n (1-based) of a config snippet.
func line(n int) int { return filtertest.Line("mirror", n, shadow) }

// upstreams is a fake filter.Upstreams: the snapshot's clusters by name.
type upstreams = filtertest.Upstreams

// build builds a mirror filter with cfg as its config and ups as the snapshot's
// upstreams (see filtertest.Build).
func build(t testing.TB, cfg string, ups filter.Upstreams) (filter.Filter, error) {
	t.Helper()
	return filtertest.Build(t, "mirror", cfg, shadow, filtertest.WithBuild(func(b *filter.Build) { b.Upstreams = ups }))
}

var noop = filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

func TestRegistered(t *testing.T) { filtertest.Registered(t, "mirror") }

func TestConfigErrors(t *testing.T) {
	ups := upstreams{"backend": noop, "shadow-v2": noop}
	tests := []struct {
		name string
		cfg  string
		none bool     // build without filter.Upstreams
		want []string // substrings of the error; empty means the config is accepted
	}{
		{name: "cluster only", cfg: "cluster: shadow-v2"},
		{name: "every field", cfg: "cluster: shadow-v2\nfraction: 0.1\nmaxBodyBytes: 1048576\nmaxInFlight: 8\ntimeout: 2s"},
		{name: "bounds", cfg: "cluster: shadow-v2\nfraction: 0\nmaxBodyBytes: 0\nmaxInFlight: 1\ntimeout: 1ms"},

		{name: "no config", cfg: "", want: []string{"cluster", "required"}},
		{name: "unknown cluster", cfg: "cluster: shadow-v3", want: []string{"cluster", `no Cluster "shadow-v3"`}},
		{name: "no upstreams", cfg: "cluster: shadow-v2", none: true, want: []string{"cluster"}},
		{name: "unknown field", cfg: "cluster: shadow-v2\nfracton: 0.1",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2)), "fracton"}},
		{name: "timeout without unit", cfg: "cluster: shadow-v2\ntimeout: 5",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2)), "not a duration"}},
		{name: "fraction as text", cfg: "cluster: shadow-v2\nfraction: half",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(2))}},
		{name: "cluster as list", cfg: "cluster: [a, b]",
			want: []string{fmt.Sprintf("filters.yaml:%d", line(1))}},
		{name: "fraction above 1", cfg: "cluster: shadow-v2\nfraction: 10", want: []string{"fraction", "not a fraction"}},
		{name: "fraction negative", cfg: "cluster: shadow-v2\nfraction: -0.5", want: []string{"fraction"}},
		{name: "negative body cap", cfg: "cluster: shadow-v2\nmaxBodyBytes: -1", want: []string{"maxBodyBytes"}},
		{name: "zero in flight", cfg: "cluster: shadow-v2\nmaxInFlight: 0", want: []string{"maxInFlight"}},
		{name: "zero timeout", cfg: "cluster: shadow-v2\ntimeout: 0s", want: []string{"timeout"}},
		{name: "every error is reported", cfg: "cluster: nope\nfraction: 2\nmaxInFlight: -3",
			want: []string{"cluster", "fraction", "maxInFlight"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := filter.Upstreams(ups)
			if tt.none {
				u = nil
			}
			_, err := build(t, tt.cfg, u)
			filtertest.CheckError(t, err, tt.want)
		})
	}
}

// TestREADMEExample keeps the README's examples honest: each must load and build.
func TestREADMEExample(t *testing.T) {
	filtertest.READMEExample(t, filtertest.WithClusters("checkout-v1", "checkout-v2"), filtertest.WithBuild(func(b *filter.Build) { b.Upstreams = upstreams{"checkout-v2": noop} }))
}

// TestFraction checks the share of requests copied, default and configured.
func TestFraction(t *testing.T) {
	const n = 20000
	tests := []struct {
		name, cfg string
		p         float64
	}{
		{"default is every request", "", 1},
		{"one in ten", "fraction: 0.1", 0.1},
		{"one in a thousand", "fraction: 0.001", 0.001},
		{"none", "fraction: 0", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := build(t, "cluster: shadow-v2\nmaxInFlight: 100000\n"+tt.cfg, upstreams{"shadow-v2": noop})
			if err != nil {
				t.Fatal(err)
			}
			var passed atomic.Int64
			h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
				passed.Add(1)
				return nil
			}))
			r := httptest.NewRequest("GET", "/", nil)
			for range n {
				if err := h.ServeHTTP(httptest.NewRecorder(), r); err != nil {
					t.Fatal(err)
				}
			}
			closeWithin(t, f)
			st := f.(statser).Stats()
			sampled := st.Mirrored + st.Failed + st.SkippedInFlight
			mean := float64(n) * tt.p
			tol := max(5*math.Sqrt(float64(n)*tt.p*(1-tt.p)), 1)
			if float64(sampled) < mean-tol || float64(sampled) > mean+tol {
				t.Errorf("%d of %d mirrored (%+v), want %.0f ± %.0f", sampled, n, st, mean, tol)
			}
			if passed.Load() != n {
				t.Errorf("%d of %d requests passed on", passed.Load(), n)
			}
		})
	}
}

// Test helpers shared by this package's tests.

// chunked hides a reader's length, so the request has ContentLength -1.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

// nopWriter is the cheapest ResponseWriter, so the benchmark measures the filter.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}
