package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func caPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestControlPlaneFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := write("token", "s3cr3t-token\n")
	emptyToken := write("empty", "\n")
	ca := write("ca.pem", string(caPEM(t)))
	notPEM := write("not.pem", "hello")

	cases := []struct {
		name    string
		args    []string
		configs []string
		dynamic bool
		err     string
	}{
		{"file mode", nil, []string{"x.yaml"}, false, ""},
		{"companion flag without -controlplane", []string{"-name", "gw"}, nil, false, "-name is only meaningful with -controlplane"},
		{"with -config", []string{"-controlplane", "cp:9443", "-name", "gw", "-controlplane-token-file", token}, []string{"x.yaml"}, false, "exclude each other"},
		{"a URL", []string{"-controlplane", "https://cp:9443", "-name", "gw"}, nil, false, "not a URL"},
		{"no port", []string{"-controlplane", "cp", "-name", "gw"}, nil, false, "want host:port"},
		{"a named port", []string{"-controlplane", "cp:https", "-name", "gw"}, nil, false, `-controlplane "cp:https": want host:port with a port number`},
		{"port 0", []string{"-controlplane", "cp:0", "-name", "gw"}, nil, false, "port number from 1 to 65535"},
		{"no host", []string{"-controlplane", ":9443", "-name", "gw"}, nil, false, "the host is missing"},
		{"the bad entry of a list is named", []string{"-controlplane", "cp-0:9443,cp-1,cp-2:9443", "-name", "gw"}, nil, false, `-controlplane entry 2 of 3 "cp-1": want host:port`},
		{"a URL in a list", []string{"-controlplane", "cp-0:9443, https://cp-1:9443", "-name", "gw"}, nil, false, `entry 2 of 2 "https://cp-1:9443": want host:port, not a URL`},
		{"an empty entry", []string{"-controlplane", "cp-0:9443,", "-name", "gw"}, nil, false, "-controlplane entry 2 of 2 is empty"},
		{"only commas", []string{"-controlplane", ",", "-name", "gw"}, nil, false, "entry 1 of 2 is empty"},
		{"a repeated entry", []string{"-controlplane", "cp-0:9443,cp-1:9443,cp-0:9443", "-name", "gw"}, nil, false, `entry 3 of 3 "cp-0:9443" is listed twice`},
		{"no name", []string{"-controlplane", "cp:9443", "-controlplane-token-file", token}, nil, false, "-name is required"},
		{"no token", []string{"-controlplane", "cp:9443", "-name", "gw"}, nil, false, "-controlplane-token-file is required"},
		{"empty token", []string{"-controlplane", "cp:9443", "-name", "gw", "-controlplane-token-file", emptyToken}, nil, false, "one token"},
		{"CA without PEM", []string{"-controlplane", "cp:9443", "-name", "gw", "-controlplane-ca", notPEM, "-controlplane-token-file", token}, nil, false, "no PEM certificate"},
		{"CA and insecure", []string{"-controlplane", "cp:9443", "-name", "gw", "-controlplane-ca", ca, "-controlplane-insecure", "-controlplane-token-file", token}, nil, false, "exclude each other"},
		{"TLS with a CA", []string{"-controlplane", "cp:9443", "-name", "gw", "-namespace", "shop", "-controlplane-ca", ca, "-controlplane-token-file", token}, nil, true, ""},
		{"insecure", []string{"-controlplane", "127.0.0.1:9443", "-name", "gw", "-node", "n1", "-controlplane-insecure", "-controlplane-token-file", token}, nil, true, ""},
		{"replicas", []string{"-controlplane", "cp-0:9443, cp-1:9443,[::1]:9443", "-name", "gw", "-controlplane-ca", ca, "-controlplane-token-file", token}, nil, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			f := addControlPlaneFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			given := map[string]bool{}
			fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
			o, dynamic, err := f.options(RoleIngress, tc.configs, given)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v; want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || dynamic != tc.dynamic {
				t.Fatalf("got dynamic=%v err=%v; want dynamic=%v", dynamic, err, tc.dynamic)
			}
			if !dynamic {
				return
			}
			var want []string
			for a := range strings.SplitSeq(fs.Lookup("controlplane").Value.String(), ",") {
				want = append(want, strings.TrimSpace(a))
			}
			if !slices.Equal(o.Addresses, want) {
				t.Errorf("addresses %q; want %q, in order", o.Addresses, want)
			}
			if o.Token != "s3cr3t-token" || o.Role != RoleIngress || o.Name != "gw" || o.Node == "" {
				t.Errorf("options %v (token %q); want the trimmed token, role, name and a node", o, o.Token)
			}
			insecure := given["controlplane-insecure"]
			if insecure != (o.TLS == nil) || (!insecure && o.TLS.RootCAs == nil) {
				t.Errorf("TLS %v with insecure=%v; want TLS with the CA unless insecure", o.TLS, insecure)
			}
		})
	}
}

func TestDynamicGatewayRefusesConfigPathsAndReload(t *testing.T) {
	if _, err := New(Options{Role: RoleIngress, Dynamic: true, ConfigPaths: []string{"x.yaml"}}); err == nil {
		t.Error("a dynamic gateway accepted config paths")
	}
	g, err := New(Options{Role: RoleIngress, Dynamic: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown()
	if g.Ready() {
		t.Error("ready before any config")
	}
	if err := g.Reload(); err == nil || !strings.Contains(err.Error(), "control plane") {
		t.Errorf("Reload: %v; want a refusal naming the control plane", err)
	}
}
