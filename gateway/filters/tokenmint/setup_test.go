package tokenmint_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
)

func TestRegistered(t *testing.T) { filtertest.Registered(t, "tokenmint") }

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	good := keyFile(t, keys().edge1)
	unreadable := filepath.Join(dir, "unreadable.pem")
	if err := os.WriteFile(unreadable, pemOf(keys().edge1), 0o000); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(notPEM, []byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func(extra string) string { return minterConfig(good, extra) }
	without := func(field string) string {
		var out []string
		for _, l := range strings.Split(base(""), "\n") {
			if !strings.HasPrefix(l, field+":") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	line := func(n int) string { return fmt.Sprintf("filters.yaml:%d", filtertest.Line("tokenmint", n)) }
	tests := []struct {
		name string
		cfg  string
		want []string // substrings of the error; empty means the config is accepted
	}{
		{name: "base", cfg: base("")},
		{name: "minimal", cfg: fmt.Sprintf("keyFile: %s\nissuer: i\naudience: a", good)},
		{name: "every field", cfg: base("requireScopes: true\nttl: 15m\nheader: X-Edge-Token\nallowAnonymous: true\ncacheSize: 0\nrealm: r")},
		{name: "star cookie", cfg: strings.Replace(base(""), `["__Host-session*", csrf]`, `["*"]`, 1)},

		{name: "no config", cfg: "", want: []string{"issuer: required", "audience: required", "keyFile: required"}},
		{name: "unknown field", cfg: base("tll: 1m"), want: []string{line(7), "tll"}},
		{name: "ttl without unit", cfg: base("ttl: 60"), want: []string{line(7), "not a duration"}},
		{name: "missing audience", cfg: without("audience"), want: []string{"audience: required"}},
		{name: "missing issuer", cfg: without("issuer"), want: []string{"issuer: required"}},
		{name: "missing key file", cfg: without("keyFile"), want: []string{"keyFile: required"}},
		{name: "ttl too long", cfg: base("ttl: 16m"), want: []string{"ttl: 16m0s is outside 5s to 15m0s"}},
		{name: "ttl too short", cfg: base("ttl: 1s"), want: []string{"ttl: 1s is outside"}},
		{name: "bad scope", cfg: strings.Replace(base(""), "scopes: [orders.read, orders.write]", `scopes: [ok, "a b"]`, 1), want: []string{"scopes[1]", `"a b"`}},
		{name: "requireScopes without scopes", cfg: strings.Replace(base("requireScopes: true"), "scopes: [orders.read, orders.write]\n", "", 1),
			want: []string{"requireScopes: needs scopes"}},
		{name: "copy reserved claim", cfg: strings.Replace(base(""), "copyClaims: [email, org.id]", "copyClaims: [email, scp]", 1),
			want: []string{"copyClaims[1]", `"scp" is set by the minter`}},
		{name: "copy claim twice", cfg: strings.Replace(base(""), "copyClaims: [email, org.id]", "copyClaims: [email, email]", 1), want: []string{"copyClaims[1]", "twice"}},
		{name: "copy empty claim", cfg: strings.Replace(base(""), "copyClaims: [email, org.id]", `copyClaims: [""]`, 1), want: []string{"copyClaims[0]"}},
		{name: "bad header", cfg: base(`header: "X Token"`), want: []string{"header", "not a valid header name"}},
		{name: "cookie header", cfg: base("header: cookie"), want: []string{"header: Cookie", "cannot carry the token"}},
		{name: "bad cookie", cfg: strings.Replace(base(""), `["__Host-session*", csrf]`, `["a b", "a;b*"]`, 1), want: []string{"stripCookies[0]", "stripCookies[1]"}},
		{name: "cache too big", cfg: base("cacheSize: 2000000"), want: []string{"cacheSize"}},
		{name: "cache negative", cfg: base("cacheSize: -1"), want: []string{"cacheSize"}},
		{name: "bad realm", cfg: base(`realm: 'a"b'`), want: []string{"realm"}},
		{name: "key file missing", cfg: strings.Replace(base(""), good, filepath.Join(dir, "nope.pem"), 1), want: []string{"keyFile", "nope.pem", "no such file"}},
		{name: "key file not a key", cfg: strings.Replace(base(""), good, notPEM, 1), want: []string{"keyFile", "cert.pem", "PEM block 1 (CERTIFICATE)"}},
		{name: "every error is reported", cfg: "keyFile: x\nttl: 1h\ncopyClaims: [iss]",
			want: []string{"issuer: required", "audience: required", "ttl", "copyClaims[0]"}},
	}
	if os.Geteuid() != 0 { // root reads any file
		tests = append(tests, struct {
			name string
			cfg  string
			want []string
		}{"key file unreadable", strings.Replace(base(""), good, unreadable, 1), []string{"keyFile", "unreadable.pem", "permission denied"}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, "tokenmint", tt.cfg, nil)
			filtertest.CheckError(t, err, tt.want)
		})
	}
}

// TestExposedKeyFileWarns: a key file others can read is accepted, with a warning.
func TestExposedKeyFileWarns(t *testing.T) {
	path := keyFile(t, keys().edge1)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err := filtertest.Build(t, "tokenmint", minterConfig(path, ""), filtertest.WithBuild(func(b *filter.Build) {
		b.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "group or others") || !strings.Contains(buf.String(), "-rw-r--r--") {
		t.Errorf("no warning about a 0644 key file: %s", buf.String())
	}
}

// TestREADMEExamples keeps the README's examples honest: each must load and build,
// with its key file path pointing at a real key file.
func TestREADMEExamples(t *testing.T) {
	readmeExample(t, keyFile(t, keys().edge1), filtertest.WithClusters("orders-v1"))
}

// readmeExample runs filtertest.READMEExample on a copy of README.md in which the
// documented key file path names keyPath.
func readmeExample(t *testing.T, keyPath string, o ...filtertest.Option) {
	md, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	const documented = "/etc/portcullis/edge-keys.pem"
	if !bytes.Contains(md, []byte(documented)) {
		t.Fatalf("README.md does not name %s", documented)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), bytes.ReplaceAll(md, []byte(documented), []byte(keyPath)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	filtertest.READMEExample(t, o...)
}
