// Package filtertest holds test helpers for filter packages; it is not for
// production code.
//
// The helpers build a filter the way the snapshot compiler does: they put its config
// into a small but complete document (a Listener "public", a Cluster "backend", any
// extra Clusters, and a Route "r" whose only rule carries the filter), parse it with
// config.Parse as "filters.yaml", look up the registered factory and call it.
package filtertest

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
)

// File is the name the test document is parsed under; positioned errors name it.
const File = "filters.yaml"

// Option changes how Build, Doc, Line and READMEExample make their document or
// their filter.Build.
type Option func(*options)

type options struct {
	clusters []string
	build    []func(*filter.Build)
	built    []func(testing.TB, filter.Filter)
}

func apply(o []Option) options {
	var opts options
	for _, f := range o {
		f(&opts)
	}
	return opts
}

// WithClusters adds Clusters with these names to the document, besides "backend"
// (for a filter that names a cluster of its own, say a mirror's shadow). In Doc's
// document they follow "backend", so they move the filter's config down.
func WithClusters(names ...string) Option {
	return func(o *options) { o.clusters = append(o.clusters, names...) }
}

// WithBuild lets a test set the parts of filter.Build the document does not give:
// Upstreams, Logger, DataDir. It runs after Config and Route are set.
func WithBuild(f func(*filter.Build)) Option {
	return func(o *options) { o.build = append(o.build, f) }
}

// WithBuilt calls f with every filter a factory returns (Build: even beside an
// error; READMEExample: each that built), for example to close it.
func WithBuilt(f func(testing.TB, filter.Filter)) Option {
	return func(o *options) { o.built = append(o.built, f) }
}

const listener = `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata:
  name: public
spec:
  address: 127.0.0.1:8080
`

// cluster returns a Cluster document, preceded by the separator.
func cluster(name string, port int) string {
	return "---\napiVersion: portcullis.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: " + name +
		fmt.Sprintf("\nspec:\n  endpoints:\n    - address: 127.0.0.1:%d\n", port)
}

const route = `---
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
        - type: %s
          config:
`

// indent is how deep the filter's config sits in the document.
const indent = "            "

// Doc builds the test document: a Listener, the Cluster "backend" (127.0.0.1:9000),
// the extra clusters named with WithClusters (ports 9001 on), and a Route whose only
// rule carries one filter of type typ with cfg, indented, as its config.
func Doc(typ, cfg string, o ...Option) string {
	return prefix(typ, apply(o)) + indentConfig(cfg)
}

func prefix(typ string, opts options) string {
	var b strings.Builder
	b.WriteString(listener)
	b.WriteString(cluster("backend", 9000))
	for i, c := range opts.clusters {
		b.WriteString(cluster(c, 9001+i))
	}
	fmt.Fprintf(&b, route, typ)
	return b.String()
}

func indentConfig(cfg string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.Trim(cfg, "\n"), "\n") {
		b.WriteString(indent + l + "\n")
	}
	return b.String()
}

// Line returns the line in filters.yaml of line n (1-based) of a config snippet
// given to Build with the same type and options, for error assertions.
func Line(typ string, n int, o ...Option) int {
	return strings.Count(prefix(typ, apply(o)), "\n") + n
}

// Build parses Doc(typ, cfg, o...) and runs the registered factory on its filter,
// the way the snapshot compiler does, with Route "default/r#0". A document that does
// not parse, or an unregistered type, fails the test; the factory's error is returned.
func Build(t testing.TB, typ, cfg string, o ...Option) (filter.Filter, error) {
	t.Helper()
	opts := apply(o)
	doc := prefix(typ, opts) + indentConfig(cfg)
	set, err := config.Parse(File, []byte(doc))
	if err != nil {
		t.Fatalf("the test document does not parse: %v\n%s", err, doc)
	}
	spec := set.Routes[0].Spec.Rules[0].Filters[0]
	factory, ok := filter.Lookup(spec.Type)
	if !ok {
		t.Fatalf("filter type %q is not registered (have %v)", spec.Type, filter.Types())
	}
	b := filter.Build{Config: spec.Config, Route: "default/r#0"}
	for _, f := range opts.build {
		f(&b)
	}
	f, err := factory(b)
	if f != nil {
		for _, fn := range opts.built {
			fn(t, f)
		}
	}
	return f, err
}

// MustBuild is Build that fails the test on an error.
func MustBuild(t testing.TB, typ, cfg string, o ...Option) filter.Filter {
	t.Helper()
	f, err := Build(t, typ, cfg, o...)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return f
}

// Registered fails the test if typ is not a registered filter type.
func Registered(t testing.TB, typ string) {
	t.Helper()
	if !slices.Contains(filter.Types(), typ) {
		t.Fatalf("%s is not registered: %v", typ, filter.Types())
	}
}

// CheckError is the shared assertion on a factory's error: with want empty the
// config must be accepted; otherwise the error must contain every string of want,
// a *config.Error in it must be positioned in filters.yaml (the compiler keeps such
// an error as it is, while plain errors it positions at the filter's config), and
// the message must be one line, since the compiler puts it in one message.
func CheckError(t testing.TB, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("want no error, got %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want an error containing %q, got none", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	var ce *config.Error
	if errors.As(err, &ce) && (ce.Line == 0 || ce.File != File) {
		t.Errorf("unpositioned *config.Error: %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q spans lines; the compiler puts it in one message", err)
	}
}

// READMEExample keeps the README's examples honest: every ```yaml block of
// README.md (in the test's directory) that has a Route is loaded together with a
// Listener "public" and the Clusters named with WithClusters (all at
// 127.0.0.1:9000), and every filter in it must build, with Route "example" and the
// options' WithBuild. There must be at least one such filter.
func READMEExample(t testing.TB, o ...Option) {
	t.Helper()
	opts := apply(o)
	md, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	rest := string(md)
	for {
		var example string
		var ok bool
		if _, rest, ok = strings.Cut(rest, "```yaml\n"); !ok {
			break
		}
		if example, rest, ok = strings.Cut(rest, "```"); !ok {
			t.Fatal("README.md has a yaml example that is not closed")
		}
		if !strings.Contains(example, "kind: Route") {
			continue
		}
		doc := example + "---\n" + listener
		for _, c := range opts.clusters {
			doc += cluster(c, 9000)
		}
		set, err := config.Parse("README.md", []byte(doc))
		if err != nil {
			t.Fatalf("the example does not load: %v", err)
		}
		for _, route := range set.Routes {
			for _, rule := range route.Spec.Rules {
				for _, fs := range rule.Filters {
					factory, ok := filter.Lookup(fs.Type)
					if !ok {
						t.Fatalf("the example names unknown filter type %q", fs.Type)
					}
					b := filter.Build{Config: fs.Config, Route: "example"}
					for _, f := range opts.build {
						f(&b)
					}
					f, err := factory(b)
					if err != nil {
						t.Errorf("the example's %s filter does not build: %v", fs.Type, err)
						continue
					}
					for _, fn := range opts.built {
						fn(t, f)
					}
					n++
				}
			}
		}
	}
	if n == 0 {
		t.Error("README.md has no yaml example of a Route with a filter")
	}
}

// Upstreams is a fake filter.Upstreams: the snapshot's clusters by name.
type Upstreams map[string]filter.Handler

// Upstream returns the handler named name.
func (u Upstreams) Upstream(name string) (filter.Handler, bool) {
	h, ok := u[name]
	return h, ok
}
