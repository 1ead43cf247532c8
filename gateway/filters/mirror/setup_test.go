package mirror_test

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	_ "github.com/portcullis/portcullis/gateway/filters/mirror"
)

// docPrefix is a valid Listener, two Clusters and a Route whose only rule carries
// one mirror filter; the config under test is appended, indented, as its config.
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
kind: Cluster
metadata:
  name: shadow-v2
spec:
  endpoints:
    - address: 127.0.0.1:9001
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
        - type: mirror
          config:
`

// line returns the line in filters.yaml of line n (1-based) of a config snippet.
func line(n int) int { return strings.Count(docPrefix, "\n") + n }

// upstreams is a fake filter.Upstreams: the snapshot's clusters by name.
type upstreams map[string]filter.Handler

func (u upstreams) Upstream(name string) (filter.Handler, bool) {
	h, ok := u[name]
	return h, ok
}

// build parses the document with cfg as the filter's config and runs the registered
// factory on it, the way the snapshot compiler does.
func build(t testing.TB, cfg string, ups filter.Upstreams) (filter.Filter, error) {
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
	return factory(filter.Build{Config: spec.Config, Route: "default/r#0", Upstreams: ups})
}

var noop = filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

func TestRegistered(t *testing.T) {
	if !slices.Contains(filter.Types(), "mirror") {
		t.Fatalf("mirror is not registered: %v", filter.Types())
	}
}

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
	for _, c := range []string{"checkout-v1", "checkout-v2"} {
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
				if _, err := factory(filter.Build{Config: fs.Config, Route: "example", Upstreams: upstreams{"checkout-v2": noop}}); err != nil {
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
