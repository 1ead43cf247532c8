package server_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/controlplane/server"
)

const validHead = `apiVersion: controlplane.portcullis.dev/v1alpha1
tls:
  certFile: server.crt
  keyFile: server.key
`

func TestParseConfigErrorsNamePlaceAndField(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown field", validHead + "  clientCA: ca.crt\n", []string{`cp.yaml:5:3: unknown field "clientCA"`}},
		{"duplicate key", validHead + "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", []string{`cp.yaml:6:1: mapping key "listen" already defined`}},
		{"wrong version", strings.Replace(validHead, "v1alpha1", "v2", 1), []string{`cp.yaml:1:13: apiVersion: "controlplane.portcullis.dev/v2" is not`}},
		{"missing TLS", "apiVersion: controlplane.portcullis.dev/v1alpha1\n", []string{"cp.yaml: tls.certFile: required", "cp.yaml: tls.keyFile: required"}},
		{"bad listen", validHead + "listen: nope\n", []string{`cp.yaml:5:9: listen: "nope" is not host:port`}},
		{"two stores", validHead + "store:\n  embedded: {dir: d}\n  etcd: {endpoints: [\"a:1\"]}\n", []string{"cp.yaml:6:3: store: embedded and etcd are exclusive"}},
		{"bad role", validHead + `roles:
  - name: ops
    rules:
      - namespaces: [shop]
        kinds: [Routez]
        verbs: [read, delete]
bindings:
  - role: nobody
    principals: [alice, proxy:x]
`, []string{
			`cp.yaml:9:17: roles[0].rules[0].kinds[0]: "Routez" is neither a kind nor a category`,
			`cp.yaml:10:23: roles[0].rules[0].verbs[1]: "delete" is not read or write`,
			`cp.yaml:12:11: bindings[0].role: no role "nobody" is defined`,
			`cp.yaml:13:18: bindings[0].principals[0]: "alice" is not kind:name`,
			`cp.yaml:13:25: bindings[0].principals[1]: "proxy:x": proxies cannot be bound to roles`,
		}},
		{"bad tokens", validHead + `proxyTokens:
  - {name: p, sha256: abc, role: gateway, namespace: shop, proxyName: "*"}
apiTokens:
  - {name: p, sha256: ` + strings.Repeat("ab", 32) + `}
  - {name: p, sha256: ` + strings.Repeat("ab", 32) + `}
`, []string{
			`proxyTokens[0].role: "gateway" is not one of ingress, egress, sidecar`,
			`proxyTokens[0].sha256: not a hex SHA-256 digest`,
			`cp.yaml:9:12: apiTokens[1].name: "p" is already the name of apiTokens[0]`,
		}},
		{"bad oidc", validHead + "oidc: {issuer: 'not a url', audience: x}\n", []string{`oidc.issuer: "not a url" is not an http(s) URL`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.ParseConfig("cp.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
}

// TestREADMEExampleConfig keeps the documented example valid.
func TestREADMEExampleConfig(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(apiVersion: controlplane\\.portcullis\\.dev/v1alpha1\n.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("controlplane/README.md has no example config")
	}
	c, err := server.ParseConfig("README.md", m[1])
	if err != nil {
		t.Fatalf("the README's example config is refused:\n%v", err)
	}
	if len(c.Roles) == 0 || len(c.Bindings) == 0 || c.OIDC == nil || c.Store.Etcd == nil {
		t.Fatalf("the example should show roles, bindings, oidc and an etcd store: %+v", c)
	}
}

func TestDevConfigKeepsItsSecretsPrivateAndStable(t *testing.T) {
	dir := t.TempDir()
	c1, files, err := server.DevConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{files.AdminToken, files.ProxyToken, files.KeyFile} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	cert1, _ := os.ReadFile(files.CertFile)
	c2, _, err := server.DevConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert2, _ := os.ReadFile(files.CertFile)
	if c1.APITokens[0].SHA256 != c2.APITokens[0].SHA256 || c1.ProxyTokens[0].SHA256 != c2.ProxyTokens[0].SHA256 || string(cert1) != string(cert2) {
		t.Fatal("a second start made new tokens or a new certificate")
	}
	if c1.Listen != "127.0.0.1:9443" || c1.HTTPListen != "127.0.0.1:9444" || c1.Store.Embedded.Dir != filepath.Join(dir, "store") {
		t.Fatalf("development mode must listen on loopback with an embedded store: %+v", c1)
	}
	tok, _ := os.ReadFile(files.AdminToken)
	if strings.Contains(c1.APITokens[0].SHA256, strings.TrimSpace(string(tok))) {
		t.Fatal("the config holds the token itself")
	}
}
