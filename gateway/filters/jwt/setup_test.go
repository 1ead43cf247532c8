package jwt_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	"github.com/portcullis/portcullis/gateway/filters/jwt"
)

// buildOpts are the parts of filter.Build a test may set.
type buildOpts struct {
	dataDir string
	log     *slog.Logger
}

// build builds a jwt filter with cfg as its config (see filtertest.Build). A built
// filter is closed when the test ends.
func build(t testing.TB, cfg string, o buildOpts) (filter.Filter, error) {
	t.Helper()
	return filtertest.Build(t, "jwt", cfg,
		filtertest.WithBuild(func(b *filter.Build) { b.Logger, b.DataDir = o.log, o.dataDir }),
		filtertest.WithBuilt(func(t testing.TB, f filter.Filter) { t.Cleanup(func() { closeFilter(t, f) }) }))
}

func mustBuild(t testing.TB, cfg string, o buildOpts) filter.Filter {
	t.Helper()
	f, err := build(t, cfg, o)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return f
}

// line returns the line in filters.yaml of line n (1-based) of a config snippet.
func line(n int) int { return filtertest.Line("jwt", n) }

func closeFilter(t testing.TB, f filter.Filter) {
	c, ok := f.(interface{ Close() error })
	if !ok {
		t.Fatal("the filter does not implement io.Closer; its refreshers would outlive the snapshot")
	}
	c.Close()
}

func TestRegistered(t *testing.T) { filtertest.Registered(t, "jwt") }

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
			filtertest.CheckError(t, err, tt.want)
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
	filtertest.READMEExample(t, filtertest.WithClusters("orders-v1"), filtertest.WithBuilt(closeFilter))
}

var _ = jwt.Type
