package config_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
)

// tlsListener is a Listener named "tls" whose spec.tls is body, written with the
// indentation of the keys directly under tls (four spaces).
func tlsListener(body string) string {
	return head + "kind: Listener\nmetadata: {name: tls}\nspec:\n  address: 127.0.0.1:8443\n  tls:\n" + body
}

const goodACME = `    acme:
      email: ops@example.com
      directory: https://ca.example.net/acme/directory
      domains: [shop.example.com]
`

func TestListenerTLSValidation(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []string // substrings of the error; none: the doc is valid
	}{
		{name: "acme only", doc: tlsListener(goodACME)},
		{name: "acme beside static", doc: tlsListener("    certificates: [{certFile: a.crt, keyFile: a.key}]\n" + goodACME)},
		{name: "neither certificates nor acme", doc: tlsListener("    minVersion: \"1.2\"\n"),
			want: []string{"f.yaml:6:", "Listener default/tls", "spec.tls: at least one of certificates and acme is required"}},
		{name: "acme without directory", doc: tlsListener("    acme:\n      domains: [shop.example.com]\n"),
			want: []string{"spec.tls.acme.directory: required", "no default CA"}},
		{name: "clear-text directory", doc: tlsListener(strings.Replace(goodACME, "https://", "http://", 1)),
			want: []string{"f.yaml:9:", "spec.tls.acme.directory", "not an https URL"}},
		{name: "bad email", doc: tlsListener(strings.Replace(goodACME, "ops@example.com", "ops at example", 1)),
			want: []string{"spec.tls.acme.email", "not an email address"}},
		{name: "nothing to obtain", doc: tlsListener("    acme: {directory: \"https://ca.example.net/dir\"}\n"),
			want: []string{"spec.tls.acme: at least one of domains and onDemand is required"}},
		{name: "wildcard domain", doc: tlsListener(strings.Replace(goodACME, "[shop.example.com]", "[\"*.example.com\"]", 1)),
			want: []string{"spec.tls.acme.domains[0]", "DNS-01"}},
		{name: "single-label domain", doc: tlsListener(strings.Replace(goodACME, "[shop.example.com]", "[shop]", 1)),
			want: []string{"spec.tls.acme.domains[0]", "not a fully qualified DNS name"}},
		{name: "underscore in domain", doc: tlsListener(strings.Replace(goodACME, "[shop.example.com]", "[my_shop.example.com]", 1)),
			want: []string{"spec.tls.acme.domains[0]", "not a DNS name"}},
		{name: "unknown challenge", doc: tlsListener(goodACME + "      challenges: [HTTP01, DNS01]\n"),
			want: []string{"f.yaml:11:28", "spec.tls.acme.challenges[1]", `"DNS01" is not HTTP01 or TLSALPN01`}},
		{name: "challenge twice", doc: tlsListener(goodACME + "      challenges: [TLSALPN01, TLSALPN01]\n"),
			want: []string{"spec.tls.acme.challenges[1]", "listed twice"}},
		{name: "HTTP01 without a plain-HTTP listener", doc: tlsListener(goodACME + "      challenges: [HTTP01]\n"),
			want: []string{"spec.tls.acme.challenges", "plain-HTTP Listener"}},
		{name: "HTTP01 with a plain-HTTP listener", doc: tlsListener(goodACME+"      challenges: [HTTP01]\n") + "---\n" + validListener},
		{name: "allow-list patterns", doc: tlsListener(goodACME + "      onDemand:\n        allow: [\"foo*.example.com\", \"*.*.example.com\", \"*.com\", \"*\", \"a.example.com\", \"*.example.com\"]\n"),
			want: []string{
				"f.yaml:12:17", `spec.tls.acme.onDemand.allow[0]: "foo*.example.com": a wildcard must be the whole leading label`,
				`spec.tls.acme.onDemand.allow[1]: "*.*.example.com": a wildcard must be the whole leading label`,
				`spec.tls.acme.onDemand.allow[2]: "*.com": a wildcard over a top-level domain is too broad`,
				`spec.tls.acme.onDemand.allow[3]: "*": a wildcard must be the whole leading label`,
			}},
		{name: "empty allow-list", doc: tlsListener(goodACME + "      onDemand: {allow: []}\n"),
			want: []string{"spec.tls.acme.onDemand.allow: at least one"}},
		{name: "storage without path", doc: tlsListener(goodACME + "      storage: {}\n"),
			want: []string{"spec.tls.acme.storage: one of path and controlPlane: true is required"}},
		{name: "storage with controlPlane false", doc: tlsListener(goodACME + "      storage: {controlPlane: false}\n"),
			want: []string{"spec.tls.acme.storage: one of path and controlPlane: true is required"}},
		{name: "storage with path and controlPlane", doc: tlsListener(goodACME + "      storage: {path: /var/lib/certs, controlPlane: true}\n"),
			want: []string{"f.yaml:11:", "spec.tls.acme.storage: path and controlPlane exclude each other"}},
		{name: "storage in the control plane", doc: tlsListener(goodACME + "      storage: {controlPlane: true}\n")},
		{name: "zero renewBefore", doc: tlsListener(goodACME + "      renewBefore: 0s\n"),
			want: []string{"spec.tls.acme.renewBefore: must be positive"}},
		{name: "unknown acme field", doc: tlsListener(goodACME + "      ca: https://x\n"),
			want: []string{`unknown field "ca"`}},
		{name: "hsts without maxAge", doc: tlsListener(goodACME + "    hsts: {includeSubDomains: true}\n"),
			want: []string{"spec.tls.hsts.maxAge: required"}},
		{name: "hsts preload without subdomains", doc: tlsListener(goodACME + "    hsts: {maxAge: 31536000s, preload: true}\n"),
			want: []string{"spec.tls.hsts.preload", "needs includeSubDomains"}},
		{name: "hsts preload too short", doc: tlsListener(goodACME + "    hsts: {maxAge: 3600s, includeSubDomains: true, preload: true}\n"),
			want: []string{"spec.tls.hsts.preload", "at least 31536000s"}},
		{name: "hsts and stapling", doc: tlsListener(goodACME + "    hsts: {maxAge: 8760h, includeSubDomains: true, preload: true}\n    ocspStapling: false\n")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("f.yaml", []byte(c.doc))
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not contain %q", err, w)
				}
			}
			// Valid entries beside the bad ones are not reported.
			for _, bad := range []string{"allow[4]", "allow[5]", "challenges[0]"} {
				if strings.Contains(err.Error(), bad) {
					t.Errorf("error %q\n reports the valid %s", err, bad)
				}
			}
		})
	}
}

func TestListenerTLSDecodes(t *testing.T) {
	doc := tlsListener(`    acme:
      directory: https://ca.example.net/acme/directory
      caRootFile: /etc/portcullis/acme-root.pem
      domains: [shop.example.com, api.example.com]
      challenges: [TLSALPN01]
      onDemand: {allow: ["*.tenants.example.com"]}
      storage: {path: /var/lib/portcullis/certs}
      renewBefore: 720h
    hsts: {maxAge: 31536000s, includeSubDomains: true}
`)
	set, err := config.Parse("f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tl := set.Listeners[0].Spec.TLS
	a := tl.ACME
	if a.Directory != "https://ca.example.net/acme/directory" || a.CARootFile != "/etc/portcullis/acme-root.pem" ||
		strings.Join(a.Domains, ",") != "shop.example.com,api.example.com" || strings.Join(a.Challenges, ",") != "TLSALPN01" ||
		a.OnDemand.Allow[0] != "*.tenants.example.com" || a.Storage.Path != "/var/lib/portcullis/certs" || a.RenewBefore.D().Hours() != 720 {
		t.Fatalf("decoded %+v", a)
	}
	if tl.OCSPStapling != nil {
		t.Fatalf("ocspStapling %v, want unset (default true)", *tl.OCSPStapling)
	}
	if got, want := tl.HSTS.Header(), "max-age=31536000; includeSubDomains"; got != want {
		t.Fatalf("HSTS header %q, want %q", got, want)
	}
	if files := set.ReferencedFiles(); len(files) != 1 || files[0] != "/etc/portcullis/acme-root.pem" {
		t.Fatalf("referenced files %v, want the CA root", files)
	}
}

func TestHSTSHeader(t *testing.T) {
	d := func(s string) *config.Duration {
		var v config.Duration
		if err := v.UnmarshalText([]byte(s)); err != nil {
			t.Fatal(err)
		}
		return &v
	}
	for _, c := range []struct {
		h    config.HSTS
		want string
	}{
		{config.HSTS{MaxAge: d("8760h"), IncludeSubDomains: true, Preload: true}, "max-age=31536000; includeSubDomains; preload"},
		{config.HSTS{MaxAge: d("90.5s")}, "max-age=90"},
		{config.HSTS{MaxAge: d("0s")}, "max-age=0"},
		{config.HSTS{}, "max-age=0"},
	} {
		if got := c.h.Header(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.h, got, c.want)
		}
	}
}
