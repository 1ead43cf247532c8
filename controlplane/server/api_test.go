package server_test

import (
	"context"
	"crypto/rsa"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/server"
	"github.com/portcullis/portcullis/controlplane/server/servertest"
)

// fixture is one control plane (real embedded store, gRPC and HTTP over loopback
// TLS) and one OIDC provider shared by the subtests of TestAPI; each subtest
// works in namespaces of its own.
type fixture struct {
	env  *servertest.Env
	idp  *mockoidc.MockOIDC
	ctx  context.Context
	http *http.Client
}

func TestAPI(t *testing.T) {
	idp, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Shutdown() })
	env := servertest.Start(t, servertest.Options{
		OIDC: &server.OIDCConfig{Issuer: idp.Issuer(), Audience: idp.ClientID},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := &fixture{env: env, idp: idp, ctx: ctx, http: env.HTTPClient(t, "", "")}
	for _, tc := range []struct {
		name string
		test func(*testing.T, *fixture)
	}{
		{"unauthenticated calls are refused and audited", testUnauthenticated},
		{"unauthorized writes are refused and audited", testUnauthorizedWrite},
		{"a namespace-scoped role stays in its namespace", testNamespaceScope},
		{"proxy and unbound credentials may not use the admin API", testProxyAndUnbound},
		{"client certificates identify operators", testClientCertificate},
		{"OIDC ID tokens identify people", testOIDC},
		{"a stale resourceVersion conflicts and overwrites nothing", testStaleWrite},
		{"a dry run writes nothing and returns the diff", testDryRun},
		{"invalid config is refused with the proxies' error text", testInvalidConfig},
		{"delete checks versions and references", testDelete},
		{"the HTTP/JSON API", testHTTP},
		{"status names the leader", testStatusAndLeader},
		{"a proxy token opens its config stream, nothing else", testProxyStream},
		{"the audit log pages by sequence", testAuditPaging},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, f) })
	}
}

func clusterDoc(ns, name, addr string) string {
	return fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata:
  name: %s
  namespace: %s
spec:
  endpoints:
    - address: %s
`, name, ns, addr)
}

func listenerDoc(ns, name, addr string) string {
	return fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: %s, namespace: %s}
spec:
  address: %s
`, name, ns, addr)
}

func routeDoc(ns, name, listener, cluster string) string {
	return fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: %s, namespace: %s}
spec:
  listeners: [%s]
  rules:
    - forward:
        backends:
          - cluster: %s
`, name, ns, listener, cluster)
}

func withVersion(doc, version string) string {
	return strings.Replace(doc, "metadata:\n", "metadata:\n  resourceVersion: \""+version+"\"\n", 1)
}

func join(docs ...string) []byte { return []byte(strings.Join(docs, "---\n")) }

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	if !strings.Contains(status.Convert(err).Message(), contains) {
		t.Fatalf("message %q does not contain %q", status.Convert(err).Message(), contains)
	}
}

func mustApply(t *testing.T, f *fixture, c cpv1.ResourcesClient, docs ...string) *cpv1.ApplyResponse {
	t.Helper()
	resp, err := c.Apply(f.ctx, &cpv1.ApplyRequest{Documents: join(docs...)})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return resp
}

// audit returns every audit entry, read as admin (bounded: at most 50 pages). A
// short page is the last: every Audit call appends an entry of its own, so the
// log never reads empty.
func audit(t *testing.T, f *fixture) []*cpv1.AuditEntry {
	t.Helper()
	c := f.env.As(t, servertest.Admin)
	var all []*cpv1.AuditEntry
	after := int64(0)
	for range 50 {
		resp, err := c.Audit(f.ctx, &cpv1.AuditRequest{AfterSequence: after, Limit: 1000})
		if err != nil {
			t.Fatalf("audit: %v", err)
		}
		all = append(all, resp.Entries...)
		if len(resp.Entries) < 1000 {
			return all
		}
		after = resp.Entries[len(resp.Entries)-1].Sequence
	}
	t.Fatal("the audit log did not end within 50 pages")
	return nil
}

// findAudit returns the entries matching pred.
func findAudit(t *testing.T, f *fixture, pred func(*cpv1.AuditEntry) bool) []*cpv1.AuditEntry {
	var out []*cpv1.AuditEntry
	for _, e := range audit(t, f) {
		if pred(e) {
			out = append(out, e)
		}
	}
	return out
}

func httpDo(t *testing.T, f *fixture, method, path, token, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, method, "https://"+f.env.HTTPAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func testUnauthenticated(t *testing.T, f *fixture) {
	_, err := f.env.Client(t, "", "", "").List(f.ctx, &cpv1.ListRequest{Namespace: "unauth-grpc"})
	wantCode(t, err, codes.Unauthenticated, "no credentials")

	bogus := "not-a-token-of-this-control-plane-4711"
	_, err = f.env.Client(t, bogus, "", "").Get(f.ctx, &cpv1.GetRequest{Kind: "Route", Namespace: "unauth-grpc", Name: "x"})
	wantCode(t, err, codes.Unauthenticated, "not one this control plane knows")

	resp, body := httpDo(t, f, "GET", "/v1/resources?namespace=unauth-http", "", "")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"UNAUTHENTICATED"`) || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("HTTP without credentials: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	entries := findAudit(t, f, func(e *cpv1.AuditEntry) bool { return e.Principal == "" })
	var sawGRPC, sawGet, sawHTTP bool
	for _, e := range entries {
		if e.Allowed {
			t.Errorf("an unauthenticated call was audited as allowed: %v", e)
		}
		if strings.Contains(e.Reason, bogus) {
			t.Errorf("the audit log holds a presented token: %q", e.Reason)
		}
		sawGRPC = sawGRPC || e.Action == "list" && e.Namespace == "unauth-grpc" && strings.Contains(e.Reason, "no credentials")
		sawGet = sawGet || e.Action == "get" && e.Kind == "Route" && e.Namespace == "unauth-grpc"
		sawHTTP = sawHTTP || strings.Contains(e.Reason, "/v1/resources")
	}
	if !sawGRPC || !sawGet || !sawHTTP {
		t.Fatalf("unauthenticated calls missing from the audit log (grpc list %v, grpc get %v, http %v): %v", sawGRPC, sawGet, sawHTTP, entries)
	}
}

func testUnauthorizedWrite(t *testing.T, f *fixture) {
	editor := f.env.As(t, servertest.ShopEditor)
	_, err := editor.Apply(f.ctx, &cpv1.ApplyRequest{Documents: []byte(clusterDoc("payments", "ledger", "10.0.0.1:80"))})
	wantCode(t, err, codes.PermissionDenied, "Cluster payments/ledger")

	// All or nothing: the allowed document of a partly refused apply is not written.
	_, err = editor.Apply(f.ctx, &cpv1.ApplyRequest{Documents: join(clusterDoc("shop", "partly", "10.0.0.1:80"), clusterDoc("payments", "partly", "10.0.0.1:80"))})
	wantCode(t, err, codes.PermissionDenied, "nothing was applied")
	admin := f.env.As(t, servertest.Admin)
	for _, ns := range []string{"shop", "payments"} {
		_, err := admin.Get(f.ctx, &cpv1.GetRequest{Kind: "Cluster", Namespace: ns, Name: "partly"})
		wantCode(t, err, codes.NotFound, "not found")
	}
	_, err = admin.Get(f.ctx, &cpv1.GetRequest{Kind: "Cluster", Namespace: "payments", Name: "ledger"})
	wantCode(t, err, codes.NotFound, "not found")

	resp, body := httpDo(t, f, "POST", "/v1/apply", f.env.Token(t, servertest.ShopEditor), clusterDoc("payments", "ledger-http", "10.0.0.1:80"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"PERMISSION_DENIED"`) {
		t.Fatalf("HTTP apply outside the role: %d %s", resp.StatusCode, body)
	}

	refused := findAudit(t, f, func(e *cpv1.AuditEntry) bool {
		return e.Principal == "token:shop-editor" && e.Action == "apply" && e.Namespace == "payments" && !e.Allowed
	})
	names := map[string]bool{}
	for _, e := range refused {
		names[e.Name] = true
		if e.Name == "ledger" && !strings.Contains(e.Reason, "no role bound to token:shop-editor grants write Cluster payments/ledger") {
			t.Errorf("refusal reason: %q", e.Reason)
		}
	}
	if !names["ledger"] || !names["partly"] || !names["ledger-http"] {
		t.Fatalf("refused writes missing from the audit log: %v", refused)
	}
	partlyShop := findAudit(t, f, func(e *cpv1.AuditEntry) bool {
		return e.Principal == "token:shop-editor" && e.Namespace == "shop" && e.Name == "partly"
	})
	if len(partlyShop) != 1 || partlyShop[0].Allowed {
		t.Fatalf("the allowed half of a refused apply must be audited as not done: %v", partlyShop)
	}
}

func testNamespaceScope(t *testing.T, f *fixture) {
	admin, editor := f.env.As(t, servertest.Admin), f.env.As(t, servertest.ShopEditor)
	mustApply(t, f, admin, clusterDoc("payments", "pay-backend", "10.0.0.2:80"))
	mustApply(t, f, editor, clusterDoc("shop", "cart", "10.0.0.3:80"))

	_, err := editor.Get(f.ctx, &cpv1.GetRequest{Kind: "Cluster", Namespace: "payments", Name: "pay-backend"})
	wantCode(t, err, codes.PermissionDenied, "read Cluster payments/pay-backend")
	_, err = editor.List(f.ctx, &cpv1.ListRequest{Namespace: "payments"})
	wantCode(t, err, codes.PermissionDenied, "token:shop-editor")
	_, err = editor.Delete(f.ctx, &cpv1.DeleteRequest{Kind: "Cluster", Namespace: "payments", Name: "pay-backend"})
	wantCode(t, err, codes.PermissionDenied, "write Cluster payments/pay-backend")

	all, err := editor.List(f.ctx, &cpv1.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sawCart := false
	for _, r := range all.Resources {
		if r.Namespace != "shop" {
			t.Errorf("a shop-scoped listing shows %s %s/%s", r.Kind, r.Namespace, r.Name)
		}
		sawCart = sawCart || r.Name == "cart"
	}
	if !sawCart {
		t.Errorf("the listing misses the editor's own cluster: %v", all.Resources)
	}
	if r, err := editor.Get(f.ctx, &cpv1.GetRequest{Kind: "Cluster", Namespace: "shop", Name: "cart"}); err != nil || r.Name != "cart" {
		t.Fatalf("reading in its own namespace: %v %v", r, err)
	}
	resp, body := httpDo(t, f, "GET", "/v1/resources/Cluster/payments/pay-backend", f.env.Token(t, servertest.ShopEditor), "")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("HTTP read outside the role: %d %s", resp.StatusCode, body)
	}
}

func testProxyAndUnbound(t *testing.T, f *fixture) {
	proxy := f.env.As(t, servertest.Proxy)
	_, err := proxy.List(f.ctx, &cpv1.ListRequest{Namespace: "shop"})
	wantCode(t, err, codes.PermissionDenied, "proxy:ingress-shop")
	_, err = proxy.Apply(f.ctx, &cpv1.ApplyRequest{Documents: []byte(clusterDoc("shop", "from-proxy", "10.0.0.1:80"))})
	wantCode(t, err, codes.PermissionDenied, "proxy credential")
	_, err = proxy.Get(f.ctx, &cpv1.GetRequest{Kind: "Cluster", Namespace: "shop", Name: "cart"})
	wantCode(t, err, codes.PermissionDenied, "proxy credential")
	_, err = proxy.Status(f.ctx, &cpv1.StatusRequest{})
	wantCode(t, err, codes.PermissionDenied, "proxy credential")

	_, err = f.env.As(t, servertest.Nobody).List(f.ctx, &cpv1.ListRequest{})
	wantCode(t, err, codes.PermissionDenied, "no role is bound to token:nobody")

	if got := findAudit(t, f, func(e *cpv1.AuditEntry) bool {
		return e.Principal == "proxy:ingress-shop" && e.Action == "apply" && e.Name == "from-proxy" && !e.Allowed
	}); len(got) != 1 {
		t.Fatalf("the proxy's refused apply is not audited once: %v", got)
	}
}

func testClientCertificate(t *testing.T, f *fixture) {
	deployer := f.env.Client(t, "", f.env.CertFile, f.env.KeyFile)
	mustApply(t, f, deployer, clusterDoc("certs", "api", "10.0.0.4:80"))
	if got := findAudit(t, f, func(e *cpv1.AuditEntry) bool {
		return e.Principal == "cert:"+servertest.DeployerURI && e.Namespace == "certs" && e.Allowed
	}); len(got) != 1 {
		t.Fatalf("the certificate's apply is not audited under its URI SAN: %v", got)
	}
	stranger := f.env.Client(t, "", f.env.UnboundCertFile, f.env.UnboundKeyFile)
	_, err := stranger.List(f.ctx, &cpv1.ListRequest{})
	wantCode(t, err, codes.PermissionDenied, "no role is bound to cert:stranger")

	// The same certificate works on the HTTP API.
	c := f.env.HTTPClient(t, f.env.CertFile, f.env.KeyFile)
	req, _ := http.NewRequestWithContext(f.ctx, "GET", "https://"+f.env.HTTPAddr+"/v1/resources/Cluster/certs/api", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP with a client certificate: %d", resp.StatusCode)
	}
}

// idToken signs an ID token for user as the provider does at login, at time now,
// for audience (the provider's client ID when empty), with key (the provider's
// when nil).
func idToken(t *testing.T, idp *mockoidc.MockOIDC, now time.Time, audience string, key *rsa.PrivateKey) string {
	t.Helper()
	sess, err := idp.SessionStore.NewSession("openid email profile", "nonce", mockoidc.DefaultUser(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := idp.Config()
	if audience != "" {
		cfg.ClientID = audience
	}
	kp := idp.Keypair
	if key != nil {
		if kp, err = mockoidc.NewKeypair(key); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := sess.IDToken(cfg, kp, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func testOIDC(t *testing.T, f *fixture) {
	now := time.Now()
	person := f.env.Client(t, idToken(t, f.idp, now, "", nil), "", "")
	if _, err := person.List(f.ctx, &cpv1.ListRequest{}); err != nil {
		t.Fatalf("a person with role reader cannot list: %v", err)
	}
	_, err := person.Apply(f.ctx, &cpv1.ApplyRequest{Documents: []byte(clusterDoc("oidc", "x", "10.0.0.1:80"))})
	wantCode(t, err, codes.PermissionDenied, "no role bound to user:"+servertest.OIDCUser+" grants write")

	_, err = f.env.Client(t, idToken(t, f.idp, now.Add(-time.Hour), "", nil), "", "").List(f.ctx, &cpv1.ListRequest{})
	wantCode(t, err, codes.Unauthenticated, "expired")
	_, err = f.env.Client(t, idToken(t, f.idp, now, "some-other-client", nil), "", "").List(f.ctx, &cpv1.ListRequest{})
	wantCode(t, err, codes.Unauthenticated, "not valid")
	_, err = f.env.Client(t, idToken(t, f.idp, now, "", mustRSAKey(t)), "", "").List(f.ctx, &cpv1.ListRequest{})
	wantCode(t, err, codes.Unauthenticated, "not valid")

	if got := findAudit(t, f, func(e *cpv1.AuditEntry) bool {
		return e.Principal == "user:"+servertest.OIDCUser && e.Action == "apply" && e.Namespace == "oidc" && !e.Allowed
	}); len(got) != 1 {
		t.Fatalf("the person's refused apply is not audited: %v", got)
	}
}
