package jwt_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/jwt"
)

// docPrefix is a valid Listener, Cluster and Route whose only rule carries one jwt
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
        - type: jwt
          config:
`

// line returns the line in filters.yaml of line n (1-based) of a config snippet.
func line(n int) int { return strings.Count(docPrefix, "\n") + n }

// buildOpts are the parts of filter.Build a test may set.
type buildOpts struct {
	dataDir string
	log     *slog.Logger
}

// build parses the document with cfg as the filter's config and runs the registered
// factory on it, the way the snapshot compiler does. A built filter is closed when
// the test ends.
func build(t testing.TB, cfg string, o buildOpts) (filter.Filter, error) {
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
	f, err := factory(filter.Build{Config: spec.Config, Route: "default/r#0", Logger: o.log, DataDir: o.dataDir})
	if f != nil {
		t.Cleanup(func() { closeFilter(t, f) })
	}
	return f, err
}

func mustBuild(t testing.TB, cfg string, o buildOpts) filter.Filter {
	t.Helper()
	f, err := build(t, cfg, o)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return f
}

func closeFilter(t testing.TB, f filter.Filter) {
	c, ok := f.(interface{ Close() error })
	if !ok {
		t.Fatal("the filter does not implement io.Closer; its refreshers would outlive the snapshot")
	}
	c.Close()
}

func TestRegistered(t *testing.T) {
	if !slices.Contains(filter.Types(), "jwt") {
		t.Fatalf("jwt is not registered: %v", filter.Types())
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(good, jwksJSON(rsaJWK("rsa1", &keys().rsa.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// iss returns one issuer entry with the given extra lines.
	iss := func(lines ...string) string {
		s := "issuers:\n  - issuer: https://id.example.com\n"
		for _, l := range lines {
			s += "    " + l + "\n"
		}
		return s
	}
	base := []string{"audiences: [api]", "algorithms: [RS256]", "jwksFile: " + good}
	with := func(extra ...string) string { return iss(append(slices.Clone(base), extra...)...) }
	replace := func(i int, l string) string {
		b := slices.Clone(base)
		b[i] = l
		return iss(b...)
	}
	tests := []struct {
		name string
		cfg  string
		want []string // substrings of the error; empty means the config is accepted
	}{
		{name: "minimal file", cfg: with()},
		{name: "every field", cfg: with("refreshInterval: 1m", "claimsToHeaders: [{claim: sub, header: x-user}, {claim: scope, header: X-Scope}]") +
			"leeway: 1m\nmaxTokenBytes: 4096\noptional: true\nreplayDetection: true\nmaxJTIs: 10\nrealm: api.example.com"},
		{name: "uri https", cfg: iss("audiences: [api]", "algorithms: [ES256, EdDSA, PS512]", "jwksURI: https://id.example.com/jwks")},
		{name: "uri http loopback", cfg: iss("audiences: [api]", "algorithms: [ES256]", "jwksURI: http://127.0.0.1:1/jwks")},
		{name: "uri http loopback v6", cfg: iss("audiences: [api]", "algorithms: [ES256]", "jwksURI: \"http://[::1]:1/jwks\"")},

		{name: "no config", cfg: "", want: []string{"issuers", "at least one"}},
		{name: "unknown field", cfg: with() + "leway: 1s", want: []string{fmt.Sprintf("filters.yaml:%d", line(6)), "leway"}},
		{name: "unknown issuer field", cfg: with("audience: [x]"), want: []string{fmt.Sprintf("filters.yaml:%d", line(6)), "audience"}},
		{name: "leeway without unit", cfg: with() + "leeway: 30", want: []string{fmt.Sprintf("filters.yaml:%d", line(6)), "not a duration"}},
		{name: "leeway too big", cfg: with() + "leeway: 6m", want: []string{"leeway", "5m0s"}},
		{name: "token cap too small", cfg: with() + "maxTokenBytes: 10", want: []string{"maxTokenBytes"}},
		{name: "token cap too big", cfg: with() + "maxTokenBytes: 1000000", want: []string{"maxTokenBytes"}},
		{name: "maxJTIs without replay", cfg: with() + "maxJTIs: 5", want: []string{"maxJTIs", "replayDetection"}},
		{name: "maxJTIs zero", cfg: with() + "replayDetection: true\nmaxJTIs: 0", want: []string{"maxJTIs"}},
		{name: "realm with quote", cfg: with() + `realm: 'a"b'`, want: []string{"realm"}},
		{name: "issuer missing", cfg: "issuers:\n  - audiences: [a]\n    algorithms: [RS256]\n    jwksFile: " + good, want: []string{"issuers[0].issuer", "required"}},
		{name: "issuer twice", cfg: with() + "\n" + strings.TrimPrefix(with(), "issuers:\n"), want: []string{"issuers[1].issuer", "twice"}},
		{name: "no audience", cfg: replace(0, "audiences: []"), want: []string{"issuers[0].audiences", "at least one"}},
		{name: "empty audience", cfg: replace(0, "audiences: [\"\"]"), want: []string{"issuers[0].audiences[0]"}},
		{name: "no algorithm", cfg: replace(1, "algorithms: []"), want: []string{"issuers[0].algorithms", "at least one"}},
		{name: "alg none", cfg: replace(1, "algorithms: [RS256, none]"), want: []string{"issuers[0].algorithms[1]", "never accepted", "unsigned"}},
		{name: "alg None", cfg: replace(1, "algorithms: [None]"), want: []string{"never accepted"}},
		{name: "alg HS256", cfg: replace(1, "algorithms: [HS256]"), want: []string{"issuers[0].algorithms[0]", "never accepted", "HMAC"}},
		{name: "alg hs512", cfg: replace(1, "algorithms: [hs512]"), want: []string{"never accepted", "HMAC"}},
		{name: "alg unknown", cfg: replace(1, "algorithms: [RS1]"), want: []string{"issuers[0].algorithms[0]", "not a supported"}},
		{name: "alg twice", cfg: replace(1, "algorithms: [RS256, RS256]"), want: []string{"issuers[0].algorithms[1]", "twice"}},
		{name: "no key source", cfg: iss("audiences: [a]", "algorithms: [RS256]"), want: []string{"issuers[0]", "one of jwksURI and jwksFile"}},
		{name: "both key sources", cfg: with("jwksURI: https://id.example.com/jwks"), want: []string{"exclusive"}},
		{name: "uri http remote", cfg: replace(2, "jwksURI: http://id.example.com/jwks"), want: []string{"issuers[0].jwksURI", "https"}},
		{name: "uri http by name", cfg: replace(2, "jwksURI: http://localhost/jwks"), want: []string{"issuers[0].jwksURI", "loopback"}},
		{name: "uri relative", cfg: replace(2, "jwksURI: /jwks"), want: []string{"issuers[0].jwksURI"}},
		{name: "uri ftp", cfg: replace(2, "jwksURI: ftp://id.example.com/jwks"), want: []string{"issuers[0].jwksURI", "ftp"}},
		{name: "uri with credentials", cfg: replace(2, "jwksURI: https://u:p@id.example.com/jwks"), want: []string{"issuers[0].jwksURI", "user"}},
		{name: "refresh too fast", cfg: with("refreshInterval: 1s"), want: []string{"issuers[0].refreshInterval"}},
		{name: "refresh too slow", cfg: with("refreshInterval: 48h"), want: []string{"issuers[0].refreshInterval"}},
		{name: "claim missing", cfg: with("claimsToHeaders: [{header: X-User}]"), want: []string{"issuers[0].claimsToHeaders[0].claim"}},
		{name: "header invalid", cfg: with("claimsToHeaders: [{claim: sub, header: \"X User\"}]"), want: []string{"claimsToHeaders[0].header", "valid header"}},
		{name: "header authorization", cfg: with("claimsToHeaders: [{claim: sub, header: authorization}]"), want: []string{"claimsToHeaders[0].header", "Authorization"}},
		{name: "header host", cfg: with("claimsToHeaders: [{claim: sub, header: Host}]"), want: []string{"claimsToHeaders[0].header"}},
		{name: "header twice", cfg: with("claimsToHeaders: [{claim: sub, header: X-A}, {claim: email, header: x-a}]"), want: []string{"claimsToHeaders[1].header", "twice"}},
		{name: "key file missing", cfg: replace(2, "jwksFile: "+filepath.Join(dir, "nope.json")), want: []string{"issuers[0].jwksFile", "nope.json"}},
		{name: "key file without usable key", cfg: replace(2, "jwksFile: "+empty), want: []string{"issuers[0].jwksFile", "no usable", "oct"}},
		{name: "every error is reported", cfg: iss("audiences: []", "algorithms: [none]", "jwksURI: http://id.example.com") + "leeway: 1h",
			want: []string{"leeway", "audiences", "algorithms[0]", "jwksURI"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.cfg, buildOpts{})
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

// TestBuildDoesNotWaitForTheNetwork: a JWKS endpoint that never answers must not
// hold up the build of a snapshot, nor its close.
func TestBuildDoesNotWaitForTheNetwork(t *testing.T) {
	release := make(chan struct{})
	srv := newJWKS(t)
	srv.hang = release
	defer close(release)
	start := time.Now()
	f := mustBuild(t, issuerConfig(srv.URL, ""), buildOpts{})
	if d := time.Since(start); d > time.Second {
		t.Errorf("build took %v while the JWKS endpoint hangs", d)
	}
	waitFor(t, "the first fetch to start", func() bool { return srv.hits.Load() == 1 })
	start = time.Now()
	closeFilter(t, f)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v while a fetch hangs", d)
	}
}

// TestREADMEExamples keeps the README's examples honest: each must load and build.
func TestREADMEExamples(t *testing.T) {
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
		example, rest, _ = strings.Cut(rest, "```")
		if !strings.Contains(example, "kind: Route") {
			continue
		}
		doc := example + "---\napiVersion: portcullis.dev/v1alpha1\nkind: Listener\nmetadata:\n  name: public\nspec:\n  address: 127.0.0.1:8080\n" +
			"---\napiVersion: portcullis.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: orders-v1\nspec:\n  endpoints:\n    - address: 127.0.0.1:9000\n"
		set, err := config.Parse("README.md", []byte(doc))
		if err != nil {
			t.Fatalf("an example does not load: %v", err)
		}
		for _, route := range set.Routes {
			for _, rule := range route.Spec.Rules {
				for _, fs := range rule.Filters {
					factory, ok := filter.Lookup(fs.Type)
					if !ok {
						t.Fatalf("an example names unknown filter type %q", fs.Type)
					}
					f, err := factory(filter.Build{Config: fs.Config, Route: "example"})
					if err != nil {
						t.Errorf("an example's %s filter does not build: %v", fs.Type, err)
						continue
					}
					closeFilter(t, f)
					n++
				}
			}
		}
	}
	if n == 0 {
		t.Error("the README has no example Route with a filter")
	}
}

var _ = jwt.Type
