package credexchange_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	"github.com/portcullis/portcullis/internal/testutil"
)

func TestRegistered(t *testing.T) { filtertest.Registered(t, "credexchange") }

func TestConfigErrors(t *testing.T) {
	key := secretFile(t, "k", "k-value")
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cfg string
		want      []string
	}{
		{"no rules", "requireMatch: true", []string{"credentials: required"}},
		{"no callers", fmt.Sprintf("credentials:\n  - match: {}\n    inject: {bearer: {tokenFile: %s}}", key),
			[]string{"credentials[0].match.callers: required"}},
		{"bad pattern", fmt.Sprintf("credentials:\n  - match: {callers: [\"spiffe://x/*/sa\"]}\n    inject: {bearer: {tokenFile: %s}}", key),
			[]string{"credentials[0].match.callers[0]"}},
		{"two kinds", fmt.Sprintf("credentials:\n  - match: {callers: [\"*\"]}\n    inject: {bearer: {tokenFile: %s}, basic: {usernameFile: %s, passwordFile: %s}}", key, key, key),
			[]string{"credentials[0].inject: name exactly one"}},
		{"header and query", fmt.Sprintf("credentials:\n  - match: {callers: [\"*\"]}\n    inject: {apiKey: {header: X-Key, query: k, valueFile: %s}}", key),
			[]string{"credentials[0].inject.apiKey: name exactly one of header and query"}},
		{"reserved header", fmt.Sprintf("credentials:\n  - match: {callers: [\"*\"]}\n    inject: {apiKey: {header: Host, valueFile: %s}}", key),
			[]string{"credentials[0].inject.apiKey.header"}},
		{"empty secret file", fmt.Sprintf("credentials:\n  - match: {callers: [\"*\"]}\n    inject: {bearer: {tokenFile: %s}}", empty),
			[]string{"credentials[0].inject.bearer.tokenFile", "is empty"}},
		{"clear-text token URL", fmt.Sprintf("credentials:\n  - match: {callers: [\"*\"]}\n    inject: {oauth2ClientCredentials: {tokenURL: \"http://idp.example/token\", clientIDFile: %s, clientSecretFile: %s}}", key, key),
			[]string{"credentials[0].inject.oauth2ClientCredentials.tokenURL", "only https"}},
		{"exchange without subject", fmt.Sprintf("credentials:\n  - match: {callers: [\"*\"]}\n    inject: {tokenExchange: {tokenURL: \"https://idp.example/token\", clientIDFile: %s, clientSecretFile: %s}}", key, key),
			[]string{"credentials[0].inject.tokenExchange.subjectTokenFrom: required"}},
		{"unknown field", fmt.Sprintf("credentials:\n  - match: {callers: [\"*\"]}\n    inject: {bearer: {token: abc, tokenFile: %s}}", key),
			[]string{"token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := filtertest.Build(t, "credexchange", tc.cfg)
			filtertest.CheckError(t, err, tc.want)
			if err != nil && strings.Contains(err.Error(), "k-value") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

func TestExposedSecretFileWarns(t *testing.T) {
	p := filepath.Join(t.TempDir(), "open-key")
	if err := os.WriteFile(p, []byte("visible-key"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	filtertest.MustBuild(t, "credexchange", fmt.Sprintf("credentials:\n  - match: {callers: [\"*\"]}\n    inject: {apiKey: {header: X-Key, valueFile: %s}}", p),
		filtertest.WithBuild(func(b *filter.Build) { b.Logger = slogTo(logs) }))
	if out := logs.String(); !strings.Contains(out, "group or others") || strings.Contains(out, "visible-key") {
		t.Fatalf("want a warning without the key, got:\n%s", out)
	}
}

func TestREADMEExample(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"orders-key", "client-id", "client-secret"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name+"-value"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The README names files under /etc/portcullis/secrets; read them from dir.
	md, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "/etc/portcullis/secrets/") {
		t.Fatal("README example does not use /etc/portcullis/secrets/")
	}
	t.Chdir(t.TempDir())
	if err := os.WriteFile("README.md", []byte(strings.ReplaceAll(string(md), "/etc/portcullis/secrets/", dir+"/")), 0o600); err != nil {
		t.Fatal(err)
	}
	filtertest.READMEExample(t, filtertest.WithClusters("partner-api"),
		filtertest.WithBuilt(func(t testing.TB, f filter.Filter) {
			t.Cleanup(func() { f.(interface{ Close() error }).Close() })
		}))
}
