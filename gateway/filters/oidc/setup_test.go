package oidc_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	"github.com/portcullis/portcullis/gateway/filters/oidc"
)

func TestRegistered(t *testing.T) { filtertest.Registered(t, oidc.Type) }

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	client := write("client", "s3cret\n")
	cookie := write("cookie", strings.Repeat("k", 32)+"\n")
	short := write("short", strings.Repeat("k", 31)+"\n")
	empty := write("empty", " \n")
	huge := write("huge", strings.Repeat("k", 5000))
	missing := filepath.Join(dir, "nope")

	// cfg is a valid config with lines replaced (by their key) or added.
	cfg := func(change ...string) string {
		lines := []string{
			"issuer: https://id.example.com/realms/shop",
			"clientID: shop-web",
			"clientSecretFile: " + client,
			"cookie: {secretFile: " + cookie + "}",
		}
	next:
		for _, c := range change {
			key, _, _ := strings.Cut(c, ":")
			for i, l := range lines {
				if strings.HasPrefix(l, key+":") {
					lines[i] = c
					continue next
				}
			}
			lines = append(lines, c)
		}
		var out []string
		for _, l := range lines {
			if !strings.HasSuffix(l, ": DELETE") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n") + "\n"
	}
	line := func(n int) string { return fmt.Sprintf("filters.yaml:%d", filtertest.Line(oidc.Type, n)) }

	tests := []struct {
		name string
		cfg  string
		want []string // substrings of the error; empty means the config is accepted
	}{
		{name: "minimal", cfg: cfg()},
		{name: "every field", cfg: cfg(
			"mode: browser", "scopes: [openid, email, groups]", "redirectPath: /auth/cb", "loginPath: /auth/login",
			"logoutPath: /auth/logout", "postLogoutRedirect: https://www.example.com/bye",
			`allowedRedirectHosts: ["*.example.com", www.example.org]`, "refreshBefore: 2m",
			"cookie: {secretFile: "+cookie+", name: shop-session, maxAge: 12h, sameSite: Strict}",
			"claimsToHeaders: [{claim: sub, header: X-User}, {claim: groups, header: x-groups}]")},
		{name: "bearerOnly", cfg: cfg("mode: bearerOnly")},
		{name: "loopback http issuer", cfg: cfg("issuer: http://127.0.0.1:5556/dex")},
		{name: "sameSite none", cfg: cfg("cookie: {secretFile: " + cookie + ", sameSite: none}")},

		{name: "empty", cfg: "", want: []string{"issuer: required", "clientID: required", "clientSecretFile: required", "cookie.secretFile: required"}},
		{name: "unknown field", cfg: cfg("clientId: x"), want: []string{line(5), "clientId"}},
		{name: "inline secret field", cfg: cfg("clientSecret: x"), want: []string{line(5), "clientSecret"}},
		{name: "missing clientID", cfg: cfg("clientID: DELETE"), want: []string{"clientID: required"}},
		{name: "issuer plain http", cfg: cfg("issuer: http://id.example.com"), want: []string{"issuer:", "https"}},
		{name: "issuer relative", cfg: cfg("issuer: /realms/shop"), want: []string{"issuer:", "absolute"}},
		{name: "issuer with query", cfg: cfg("issuer: https://id.example.com/?tenant=1"), want: []string{"issuer:", "query"}},
		{name: "issuer with user", cfg: cfg("issuer: https://u:p@id.example.com"), want: []string{"issuer:", "user"}},
		{name: "bad mode", cfg: cfg("mode: api"), want: []string{"mode:", `"api"`, "browser", "bearerOnly"}},
		{name: "client secret unreadable", cfg: cfg("clientSecretFile: " + missing), want: []string{"clientSecretFile:", "nope"}},
		{name: "client secret empty", cfg: cfg("clientSecretFile: " + empty), want: []string{"clientSecretFile:", "empty"}},
		{name: "client secret huge", cfg: cfg("clientSecretFile: " + huge), want: []string{"clientSecretFile:", "larger"}},
		{name: "cookie secret unreadable", cfg: cfg("cookie: {secretFile: " + missing + "}"), want: []string{"cookie.secretFile:", "nope"}},
		{name: "cookie secret short", cfg: cfg("cookie: {secretFile: " + short + "}"), want: []string{"cookie.secretFile:", "31 bytes", "32"}},
		{name: "cookie missing", cfg: cfg("cookie: DELETE"), want: []string{"cookie.secretFile: required"}},
		{name: "cookie name", cfg: cfg("cookie: {secretFile: " + cookie + ", name: \"a b\"}"), want: []string{"cookie.name:"}},
		{name: "cookie maxAge short", cfg: cfg("cookie: {secretFile: " + cookie + ", maxAge: 1m}"), want: []string{"cookie.maxAge:"}},
		{name: "cookie maxAge long", cfg: cfg("cookie: {secretFile: " + cookie + ", maxAge: 1000h}"), want: []string{"cookie.maxAge:"}},
		{name: "cookie sameSite", cfg: cfg("cookie: {secretFile: " + cookie + ", sameSite: loose}"), want: []string{"cookie.sameSite:", "loose"}},
		{name: "scopes without openid", cfg: cfg("scopes: [profile]"), want: []string{"scopes:", "openid"}},
		{name: "scope twice", cfg: cfg("scopes: [openid, email, email]"), want: []string{"scopes[2]:", "twice"}},
		{name: "scope with space", cfg: cfg(`scopes: [openid, "a b"]`), want: []string{"scopes[1]:"}},
		{name: "relative path", cfg: cfg("redirectPath: oauth2/callback"), want: []string{"redirectPath:"}},
		{name: "unclean path", cfg: cfg("logoutPath: /a/../b"), want: []string{"logoutPath:"}},
		{name: "path twice", cfg: cfg("logoutPath: /oauth2/callback"), want: []string{"logoutPath:", "redirectPath"}},
		{name: "post-logout elsewhere", cfg: cfg("postLogoutRedirect: http://www.example.com/"), want: []string{"postLogoutRedirect:", "https"}},
		{name: "post-logout scheme-relative", cfg: cfg("postLogoutRedirect: //evil.example/"), want: []string{"postLogoutRedirect:"}},
		{name: "redirect host with scheme", cfg: cfg("allowedRedirectHosts: [https://a.example.com]"), want: []string{"allowedRedirectHosts[0]:"}},
		{name: "redirect host tld wildcard", cfg: cfg(`allowedRedirectHosts: ["*.com"]`), want: []string{"allowedRedirectHosts[0]:"}},
		{name: "refreshBefore too long", cfg: cfg("refreshBefore: 2h"), want: []string{"refreshBefore:"}},
		{name: "bearerOnly with login paths", cfg: cfg("mode: bearerOnly", "redirectPath: /cb", "allowedRedirectHosts: [a.example.com]"),
			want: []string{"redirectPath: only meaningful with mode: browser", "allowedRedirectHosts: only"}},
		{name: "claim header reserved", cfg: cfg("claimsToHeaders: [{claim: sub, header: cookie}]"), want: []string{"claimsToHeaders[0].header:", "Cookie"}},
		{name: "claim header twice", cfg: cfg("claimsToHeaders: [{claim: sub, header: X-A}, {claim: email, header: x-a}]"), want: []string{"claimsToHeaders[1].header:", "twice"}},
		{name: "claim missing", cfg: cfg("claimsToHeaders: [{header: X-A}]"), want: []string{"claimsToHeaders[0].claim: required"}},
		{name: "every error is reported", cfg: cfg("clientID: DELETE", "mode: x", "clientSecretFile: "+missing),
			want: []string{"clientID", "mode", "clientSecretFile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := filtertest.Build(t, oidc.Type, tt.cfg,
				filtertest.WithBuilt(func(t testing.TB, f filter.Filter) { t.Cleanup(func() { closeFilter(t, f) }) }))
			filtertest.CheckError(t, err, tt.want)
			if err != nil && f != nil {
				t.Error("a filter was returned beside an error")
			}
			if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "kkkkkkkk")) {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

// TestREADMEExamples keeps the README's examples honest: each must load and build.
// The examples name secret files under /etc/portcullis/oidc/; the test runs them
// with those paths pointing at files it writes, and nothing else changed.
func TestREADMEExamples(t *testing.T) {
	md, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const prefix = "/etc/portcullis/oidc/"
	if n := strings.Count(string(md), prefix); n < 2 {
		t.Fatalf("README.md names %d files under %s; the test expects its examples' secrets there", n, prefix)
	}
	for _, name := range []string{"client-secret", "cookie-secret"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Repeat("r", 48)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte(strings.ReplaceAll(string(md), prefix, dir+"/")), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	filtertest.READMEExample(t, filtertest.WithClusters("shop-web", "shop-api"),
		filtertest.WithBuilt(func(t testing.TB, f filter.Filter) { t.Cleanup(func() { closeFilter(t, f) }) }))
}
