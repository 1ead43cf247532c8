package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controlplane/admin"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/server/servertest"
)

// cli runs portctl against one control plane, as one principal.
type cli struct {
	t   *testing.T
	env map[string]string
}

type result struct {
	code           int
	stdout, stderr string
}

func (c cli) run(stdin string, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut, func(k string) string { return c.env[k] })
	return result{code, out.String(), errOut.String()}
}

func (c cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run("", args...)
	if r.code != exitOK {
		c.t.Fatalf("portctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func (c cli) fails(code int, stderrHas string, args ...string) result {
	c.t.Helper()
	r := c.run("", args...)
	if r.code != code || !strings.Contains(r.stderr, stderrHas) {
		c.t.Fatalf("portctl %s: exit %d, want %d with stderr containing %q\nstdout: %s\nstderr: %s",
			strings.Join(args, " "), r.code, code, stderrHas, r.stdout, r.stderr)
	}
	return r
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const clusterYAML = `apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata:
  name: api
  namespace: shop
spec:
  endpoints:
    - address: 10.1.0.1:80
`

const routeYAML = `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: web, namespace: shop}
spec:
  address: 127.0.0.1:8080
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: web, namespace: shop}
spec:
  listeners: [web]
  rules:
    - forward:
        backends:
          - cluster: api
`

func TestPortctlEndToEnd(t *testing.T) {
	env := servertest.Start(t, servertest.Options{})
	as := func(who string) cli {
		return cli{t, map[string]string{"PORTCTL_SERVER": env.GRPCAddr, "PORTCTL_CA": env.CAFile, "PORTCTL_TOKEN_FILE": env.Tokens[who]}}
	}
	admin := as(servertest.Admin)
	dir := t.TempDir()
	write(t, dir, "a-cluster.yaml", clusterYAML)
	write(t, dir, "b-route.yaml", routeYAML)

	t.Run("apply a directory in one request", func(t *testing.T) {
		out := admin.ok("apply", "-f", dir)
		for _, want := range []string{"Cluster shop/api created", "Listener shop/web created", "Route shop/web created"} {
			if !strings.Contains(out, want) {
				t.Errorf("apply output lacks %q:\n%s", want, out)
			}
		}
		if out := admin.ok("apply", "-f", dir); strings.Count(out, "unchanged") != 3 {
			t.Errorf("re-apply should change nothing:\n%s", out)
		}
	})

	t.Run("get", func(t *testing.T) {
		table := admin.ok("get", "clusters", "-A")
		if !regexp.MustCompile(`(?m)^Cluster\s+shop\s+api\s+\d+\s*$`).MatchString(table) {
			t.Errorf("table:\n%s", table)
		}
		y := admin.ok("get", "cluster", "api", "-n", "shop", "-o", "yaml")
		if !strings.Contains(y, "resourceVersion:") || !strings.Contains(y, "address: 10.1.0.1:80") {
			t.Errorf("yaml:\n%s", y)
		}
		var doc struct {
			Kind     string
			Metadata struct{ Name, Namespace string }
		}
		if err := json.Unmarshal([]byte(admin.ok("--timeout", "10s", "get", "Route", "web", "--namespace=shop", "-o", "json")), &doc); err != nil ||
			doc.Kind != "Route" || doc.Metadata.Name != "web" || doc.Metadata.Namespace != "shop" {
			t.Errorf("json: %+v %v", doc, err)
		}
	})

	t.Run("diff, then a stale apply conflicts with exit 3", func(t *testing.T) {
		old := write(t, dir, "old.yaml", admin.ok("get", "cluster", "api", "-n", "shop", "-o", "yaml"))
		changed := write(t, t.TempDir(), "new.yaml", strings.Replace(readFile(t, old), "10.1.0.1:80", "10.1.0.2:80", 1))
		d := admin.ok("diff", "-f", changed)
		if !strings.Contains(d, "-    - address: 10.1.0.1:80\n+    - address: 10.1.0.2:80\n") || !strings.HasPrefix(d, "--- Cluster shop/api") {
			t.Fatalf("diff:\n%s", d)
		}
		if y := admin.ok("get", "cluster", "api", "-n", "shop", "-o", "yaml"); !strings.Contains(y, "10.1.0.1:80") {
			t.Fatal("diff wrote")
		}
		if out := admin.ok("apply", "-f", changed); !strings.Contains(out, "Cluster shop/api updated") {
			t.Fatalf("apply at the current version: %s", out)
		}
		r := admin.fails(exitConflict, "conflict", "apply", "-f", old)
		if !strings.Contains(r.stderr, "Cluster shop/api: resourceVersion") {
			t.Fatalf("the conflict does not name the resource: %s", r.stderr)
		}
		if y := admin.ok("get", "cluster", "api", "-n", "shop", "-o", "yaml"); !strings.Contains(y, "10.1.0.2:80") {
			t.Fatal("the stale apply overwrote")
		}
	})

	t.Run("errors name the input file and line", func(t *testing.T) {
		bad := t.TempDir()
		write(t, bad, "1-ok.yaml", clusterYAML)
		write(t, bad, "2-bad.yaml", strings.Replace(clusterYAML, "endpoints:", "endpointz:", 1))
		r := admin.fails(exitError, "2-bad.yaml:7:", "apply", "-f", bad)
		if strings.Contains(r.stderr, "request:") {
			t.Fatalf("a place was left in the request's numbering: %s", r.stderr)
		}
		r = cli{t, admin.env}.run(routeYAML+"  oops: 1\n", "apply", "-f", "-")
		if r.code != exitError || !strings.Contains(r.stderr, "<stdin>:") {
			t.Fatalf("stdin: exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("delete", func(t *testing.T) {
		admin.fails(exitError, `no Cluster "api" in namespace "shop"`, "delete", "cluster", "api", "-n", "shop")
		if out := admin.ok("delete", "route", "web", "-n", "shop"); out != "Route shop/web deleted\n" {
			t.Fatalf("delete: %q", out)
		}
		admin.ok("delete", "cluster", "api", "-n", "shop")
		admin.fails(exitError, "not found", "get", "cluster", "api", "-n", "shop")
	})

	t.Run("status and audit", func(t *testing.T) {
		if out := admin.ok("status"); !strings.HasPrefix(out, "leader: ") {
			t.Fatalf("status: %s", out)
		}
		table := admin.ok("audit", "--after", "2", "--limit", "5")
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if len(lines) != 6 || !strings.HasPrefix(lines[0], "SEQ") || !strings.HasPrefix(lines[1], "3 ") {
			t.Fatalf("audit table:\n%s", table)
		}
		var resp struct {
			Entries []struct{ Sequence, Principal, Action string }
		}
		if err := json.Unmarshal([]byte(admin.ok("audit", "-o", "json", "--limit", "3")), &resp); err != nil ||
			len(resp.Entries) != 3 || resp.Entries[0].Sequence != "1" || resp.Entries[0].Principal != "token:admin" {
			t.Fatalf("audit json: %+v %v", resp, err)
		}
	})

	t.Run("exit codes and messages", func(t *testing.T) {
		admin.fails(exitUsage, "Usage: portctl")
		admin.fails(exitUsage, `unknown command "frobnicate"`, "frobnicate")
		admin.fails(exitUsage, `unknown kind "gateways"`, "get", "gateways")
		admin.fails(exitUsage, `-o "xml" is not one of`, "get", "routes", "-o", "xml")
		admin.fails(exitUsage, "-f FILE|DIR|- is required", "apply")
		admin.fails(exitUsage, "flag provided but not defined", "get", "routes", "--bogus")
		noCreds := cli{t, map[string]string{"PORTCTL_SERVER": env.GRPCAddr, "PORTCTL_CA": env.CAFile}}
		noCreds.fails(exitError, "not authenticated: no credentials", "get", "routes")
		as(servertest.ShopEditor).fails(exitError, "permission denied: ", "get", "routes", "-n", "payments")
		// Global flags before the command, overriding the environment.
		cli{t, map[string]string{}}.fails(exitError, "not authenticated", "--server", env.GRPCAddr, "--ca", env.CAFile, "status")
		// A client certificate instead of a token.
		cert := cli{t, map[string]string{"PORTCTL_SERVER": env.GRPCAddr, "PORTCTL_CA": env.CAFile, "PORTCTL_CERT": env.CertFile, "PORTCTL_KEY": env.KeyFile}}
		cert.ok("get", "all", "-A")
	})
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTokenCommands(t *testing.T) {
	c := cli{t, map[string]string{}}
	out := filepath.Join(t.TempDir(), "ci.token")
	printed := c.ok("token", "new", "--out", out)
	tok := strings.TrimSpace(readFile(t, out))
	if printed != "sha256: "+auth.TokenDigest(tok)+"\n" || strings.Contains(printed, tok) {
		t.Fatalf("token new printed %q", printed)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", st.Mode().Perm())
	}
	if r := c.run(tok+"\n", "token", "digest"); r.code != 0 || r.stdout != printed {
		t.Fatalf("digest of stdin: %+v", r)
	}
	c.fails(exitError, "file exists", "token", "new", "--out", out)
	c.fails(exitUsage, "--out FILE is required", "token", "new")
}

// TestKeptInStepWithTheServer checks the copies portctl keeps to stay free of
// server packages.
func TestKeptInStepWithTheServer(t *testing.T) {
	if requestFile != admin.RequestFile {
		t.Errorf("requestFile %q, admin.RequestFile %q", requestFile, admin.RequestFile)
	}
	if !slices.Equal(kinds, auth.ResourceKinds) {
		t.Errorf("kinds %v, auth.ResourceKinds %v", kinds, auth.ResourceKinds)
	}
	if tokenDigest("x") != auth.TokenDigest("x") {
		t.Error("tokenDigest differs from auth.TokenDigest")
	}
}

func TestKindOf(t *testing.T) {
	for in, want := range map[string]string{
		"route": "Route", "Routes": "Route", "authorizationpolicies": "AuthorizationPolicy", "EgressPolicy": "EgressPolicy",
		"telemetry": "Telemetry", "externalservices": "ExternalService", "all": "",
	} {
		if got, err := kindOf(in); err != nil || got != want {
			t.Errorf("kindOf(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := kindOf("gateway"); err == nil {
		t.Error("kindOf(gateway) accepted")
	}
}

func TestPlaceInFiles(t *testing.T) {
	dir := t.TempDir()
	a := write(t, dir, "a.yaml", "one\ntwo\n")
	b := write(t, dir, "b.yaml", "three\nfour\nfive") // no final newline
	joined, sources, err := readSources([]string{a, b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(joined) != "one\ntwo\n---\nthree\nfour\nfive\n" {
		t.Fatalf("joined %q", joined)
	}
	got := placeInFiles("request:2:1: x\nrequest:6:3: y\nrequest:3: the separator", sources)
	want := a + ":2:1: x\n" + b + ":3:3: y\nrequest:3: the separator"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}
