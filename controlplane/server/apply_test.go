package server_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/controlplane/admin"
	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/server/servertest"
	"github.com/portcullis/portcullis/gateway/config"
)

func mustRSAKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testStaleWrite(t *testing.T, f *fixture) {
	c := f.env.As(t, servertest.Admin)
	v1 := mustApply(t, f, c, clusterDoc("conflicts", "api", "10.0.1.1:80")).Results[0].NewVersion
	v2 := mustApply(t, f, c, withVersion(clusterDoc("conflicts", "api", "10.0.1.2:80"), v1)).Results[0].NewVersion
	if v2 == v1 || v2 == "" {
		t.Fatalf("versions %q then %q", v1, v2)
	}
	_, err := c.Apply(f.ctx, &cpv1.ApplyRequest{Documents: []byte(withVersion(clusterDoc("conflicts", "api", "10.0.1.3:80"), v1))})
	wantCode(t, err, codes.Aborted, fmt.Sprintf("Cluster conflicts/api: resourceVersion %s was given but it is at %s now", v1, v2))

	// With a fresh document beside the stale one, neither is written.
	_, err = c.Apply(f.ctx, &cpv1.ApplyRequest{Documents: join(
		clusterDoc("conflicts", "fresh", "10.0.1.9:80"),
		withVersion(clusterDoc("conflicts", "api", "10.0.1.4:80"), v1))})
	wantCode(t, err, codes.Aborted, "nothing was written")
	_, err = c.Get(f.ctx, &cpv1.GetRequest{Kind: "Cluster", Namespace: "conflicts", Name: "fresh"})
	wantCode(t, err, codes.NotFound, "not found")

	resp, body := httpDo(t, f, "POST", "/v1/apply", f.env.Token(t, servertest.Admin), withVersion(clusterDoc("conflicts", "api", "10.0.1.5:80"), v1))
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, `"ABORTED"`) {
		t.Fatalf("HTTP stale apply: %d %s", resp.StatusCode, body)
	}

	got, err := c.Get(f.ctx, &cpv1.GetRequest{Kind: "Cluster", Namespace: "conflicts", Name: "api"})
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != v2 || !strings.Contains(string(got.Yaml), "10.0.1.2:80") || !strings.Contains(string(got.Yaml), `resourceVersion: "`+v2+`"`) {
		t.Fatalf("a stale write changed the resource: version %s\n%s", got.ResourceVersion, got.Yaml)
	}
}

func testDryRun(t *testing.T, f *fixture) {
	c := f.env.As(t, servertest.Admin)
	v := mustApply(t, f, c, clusterDoc("dry", "api", "10.0.2.1:80")).Results[0].NewVersion
	resp, err := c.Apply(f.ctx, &cpv1.ApplyRequest{DryRun: true, Documents: join(
		clusterDoc("dry", "api", "10.0.2.2:80"),
		clusterDoc("dry", "new", "10.0.2.3:80"))})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*cpv1.ApplyResult{}
	for _, r := range resp.Results {
		byName[r.Name] = r
	}
	upd, cre := byName["api"], byName["new"]
	wantDiff := "--- Cluster dry/api (resourceVersion " + v + ")\n" +
		"+++ Cluster dry/api (dry run)\n" +
		"@@ -5,4 +5,4 @@\n" +
		"   namespace: dry\n" +
		" spec:\n" +
		"   endpoints:\n" +
		"-    - address: 10.0.2.1:80\n" +
		"+    - address: 10.0.2.2:80\n"
	if upd == nil || upd.Action != admin.ActionUpdated || upd.NewVersion != "" || upd.OldVersion != v || upd.Diff != wantDiff {
		t.Fatalf("dry-run update: %v\ndiff:\n%s\nwant:\n%s", upd, upd.GetDiff(), wantDiff)
	}
	if cre == nil || cre.Action != admin.ActionCreated || !strings.HasPrefix(cre.Diff, "--- /dev/null\n+++ Cluster dry/new (dry run)\n@@ -0,0 +1,8 @@\n+apiVersion: portcullis.dev/v1alpha1\n") {
		t.Fatalf("dry-run create: %v\n%s", cre, cre.GetDiff())
	}
	got, err := c.Get(f.ctx, &cpv1.GetRequest{Kind: "Cluster", Namespace: "dry", Name: "api"})
	if err != nil || got.ResourceVersion != v || !strings.Contains(string(got.Yaml), "10.0.2.1:80") {
		t.Fatalf("a dry run changed the resource: %v %v", got, err)
	}
	_, err = c.Get(f.ctx, &cpv1.GetRequest{Kind: "Cluster", Namespace: "dry", Name: "new"})
	wantCode(t, err, codes.NotFound, "not found")

	// Applying the same document again changes nothing and says so.
	again := mustApply(t, f, c, clusterDoc("dry", "api", "10.0.2.1:80")).Results[0]
	if again.Action != admin.ActionUnchanged || again.NewVersion != v || again.Diff != "" {
		t.Fatalf("re-applying the stored document: %v", again)
	}
}

func testInvalidConfig(t *testing.T, f *fixture) {
	c := f.env.As(t, servertest.Admin)
	cases := map[string]string{
		"dangling references": routeDoc("invalid", "web", "nowhere", "missing"),
		"unknown field":       strings.Replace(clusterDoc("invalid", "api", "10.0.3.1:80"), "endpoints:", "endpointz:", 1),
		"bad value":           clusterDoc("invalid", "api", "not-an-address"),
		"two invalid documents": string(join(clusterDoc("invalid", "api", "not-an-address"),
			routeDoc("invalid", "web", "nowhere", "api"))),
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			_, proxyErr := config.Parse(admin.RequestFile, []byte(doc))
			if proxyErr == nil {
				t.Fatalf("the test document is valid to a proxy:\n%s", doc)
			}
			_, err := c.Apply(f.ctx, &cpv1.ApplyRequest{Documents: []byte(doc)})
			wantCode(t, err, codes.InvalidArgument, "")
			if got := strings.TrimPrefix(err.Error(), "rpc error: code = InvalidArgument desc = "); got != proxyErr.Error() {
				t.Fatalf("control plane says:\n%s\nproxy says:\n%s", got, proxyErr)
			}
		})
	}
	list, err := c.List(f.ctx, &cpv1.ListRequest{Namespace: "invalid"})
	if err != nil || len(list.Resources) != 0 {
		t.Fatalf("refused documents were stored: %v %v", list, err)
	}

	// A reference satisfied by a stored resource is valid: validation sees the
	// namespace as it would be, not the request alone.
	mustApply(t, f, c, clusterDoc("refs", "api", "10.0.3.2:80"), listenerDoc("refs", "web", "127.0.0.1:8080"))
	mustApply(t, f, c, routeDoc("refs", "web", "web", "api"))
}

func testDelete(t *testing.T, f *fixture) {
	c := f.env.As(t, servertest.Admin)
	resp := mustApply(t, f, c, clusterDoc("del", "api", "10.0.4.1:80"), listenerDoc("del", "web", "127.0.0.1:8080"), routeDoc("del", "web", "web", "api"))
	versions := map[string]string{}
	for _, r := range resp.Results {
		versions[r.Kind] = r.NewVersion
	}
	_, err := c.Delete(f.ctx, &cpv1.DeleteRequest{Kind: "Cluster", Namespace: "del", Name: "api"})
	wantCode(t, err, codes.FailedPrecondition, `no Cluster "api" in namespace "del"`)
	_, err = c.Delete(f.ctx, &cpv1.DeleteRequest{Kind: "Route", Namespace: "del", Name: "web", ResourceVersion: versions["Cluster"]})
	wantCode(t, err, codes.Aborted, "nothing was deleted")
	if _, err := c.Delete(f.ctx, &cpv1.DeleteRequest{Kind: "Route", Namespace: "del", Name: "web", ResourceVersion: versions["Route"]}); err != nil {
		t.Fatalf("delete at the current version: %v", err)
	}
	if _, err := c.Delete(f.ctx, &cpv1.DeleteRequest{Kind: "Cluster", Namespace: "del", Name: "api"}); err != nil {
		t.Fatalf("delete once nothing refers to it: %v", err)
	}
	_, err = c.Get(f.ctx, &cpv1.GetRequest{Kind: "Cluster", Namespace: "del", Name: "api"})
	wantCode(t, err, codes.NotFound, "not found")
	r, body := httpDo(t, f, "DELETE", "/v1/resources/Cluster/del/api", f.env.Token(t, servertest.Admin), "")
	if r.StatusCode != http.StatusNotFound || !strings.Contains(body, `"NOT_FOUND"`) {
		t.Fatalf("HTTP delete of a missing resource: %d %s", r.StatusCode, body)
	}
	_, err = c.Get(f.ctx, &cpv1.GetRequest{Kind: "Cluster/../Route", Namespace: "del", Name: "web"})
	wantCode(t, err, codes.InvalidArgument, "is not one of")
}

func testHTTP(t *testing.T, f *fixture) {
	tok := f.env.Token(t, servertest.Admin)
	r, body := httpDo(t, f, "POST", "/v1/apply?dryRun=true", tok, clusterDoc("http", "api", "10.0.5.1:80"))
	var applied cpv1.ApplyResponse
	if r.StatusCode != http.StatusOK || protojson.Unmarshal([]byte(body), &applied) != nil || len(applied.Results) != 1 || applied.Results[0].Action != "created" {
		t.Fatalf("HTTP dry run: %d %s", r.StatusCode, body)
	}
	if r, body = httpDo(t, f, "GET", "/v1/resources/Cluster/http/api", tok, ""); r.StatusCode != http.StatusNotFound {
		t.Fatalf("an HTTP dry run wrote: %d %s", r.StatusCode, body)
	}
	if r, body = httpDo(t, f, "POST", "/v1/apply", tok, clusterDoc("http", "api", "10.0.5.1:80")); r.StatusCode != http.StatusOK {
		t.Fatalf("HTTP apply: %d %s", r.StatusCode, body)
	}
	r, body = httpDo(t, f, "GET", "/v1/resources/Cluster/http/api", tok, "", "Accept", "application/yaml")
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/yaml" || !strings.Contains(body, "address: 10.0.5.1:80") || !strings.Contains(body, "resourceVersion:") {
		t.Fatalf("HTTP get as YAML: %d %s", r.StatusCode, body)
	}
	r, body = httpDo(t, f, "GET", "/v1/resources?kind=Cluster&namespace=http", tok, "")
	var list cpv1.ListResponse
	if r.StatusCode != http.StatusOK || protojson.Unmarshal([]byte(body), &list) != nil || len(list.Resources) != 1 {
		t.Fatalf("HTTP list: %d %s", r.StatusCode, body)
	}
	r, body = httpDo(t, f, "GET", "/v1/audit?limit=2", tok, "")
	var au cpv1.AuditResponse
	if r.StatusCode != http.StatusOK || protojson.Unmarshal([]byte(body), &au) != nil || len(au.Entries) != 2 || au.Entries[0].Sequence != 1 {
		t.Fatalf("HTTP audit: %d %s", r.StatusCode, body)
	}
	for path, want := range map[string]int{
		"/v1/apply?dryRun=maybe": http.StatusBadRequest,
		"/v1/nothing-here":       http.StatusNotFound,
	} {
		method := "GET"
		if strings.HasPrefix(path, "/v1/apply") {
			method = "POST"
		}
		r, body := httpDo(t, f, method, path, tok, "")
		var e admin.ErrorBody
		if r.StatusCode != want || json.Unmarshal([]byte(body), &e) != nil || e.Message == "" {
			t.Errorf("%s %s: %d %s, want %d with a JSON error", method, path, r.StatusCode, body, want)
		}
	}
	r, body = httpDo(t, f, "GET", "/v1/snapshot", tok, "")
	if r.StatusCode != http.StatusOK || len(body) < 4096 || !strings.Contains(body, "/portcullis/data/resources/Cluster/http/api") {
		t.Fatalf("snapshot: %d, %d bytes", r.StatusCode, len(body))
	}
	if r, body = httpDo(t, f, "GET", "/v1/snapshot", f.env.Token(t, servertest.Reader), ""); r.StatusCode != http.StatusForbidden {
		t.Fatalf("a reader may download the whole store: %d %s", r.StatusCode, body)
	}
	if got := findAudit(t, f, func(e *cpv1.AuditEntry) bool { return e.Action == "snapshot" }); len(got) != 2 || !got[0].Allowed || got[1].Allowed {
		t.Fatalf("snapshots are not audited: %v", got)
	}
	if r, body = httpDo(t, f, "GET", "/healthz", "", ""); r.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d %s", r.StatusCode, body)
	}
	_, metrics := httpDo(t, f, "GET", "/metrics", "", "")
	for _, want := range []string{
		`portcullis_controlplane_api_requests_total{code="OK",method="Resources/Apply",transport="http"}`,
		`portcullis_controlplane_api_requests_total{code="PermissionDenied",method="Resources/Apply",transport="grpc"}`,
		`portcullis_controlplane_store_request_duration_seconds_bucket{op="put",outcome="ok"`,
		"portcullis_controlplane_leader ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func testStatusAndLeader(t *testing.T, f *fixture) {
	c := f.env.As(t, servertest.Reader)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Status(f.ctx, &cpv1.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Leader == f.env.Config.Name {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader %q, want %q", resp.Leader, f.env.Config.Name)
		}
		time.Sleep(50 * time.Millisecond) // polling the election's outcome
	}
	_, metrics := httpDo(t, f, "GET", "/metrics", "", "")
	if !strings.Contains(metrics, "portcullis_controlplane_leader 1") {
		t.Fatalf("the leader gauge is not 1:\n%s", grepLines(metrics, "portcullis_controlplane_leader"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func testAuditPaging(t *testing.T, f *fixture) {
	all := audit(t, f)
	if len(all) < 10 {
		t.Fatalf("only %d audit entries", len(all))
	}
	for i, e := range all {
		if e.Sequence != int64(i+1) {
			t.Fatalf("entry %d has sequence %d: the log must be dense", i, e.Sequence)
		}
		if e.TimeUnixNano == 0 || e.Action == "" {
			t.Fatalf("entry without time or action: %v", e)
		}
	}
	c := f.env.As(t, servertest.Admin)
	resp, err := c.Audit(f.ctx, &cpv1.AuditRequest{AfterSequence: 3, Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 4 || resp.Entries[0].Sequence != 4 || resp.Entries[3].Sequence != 7 {
		t.Fatalf("after 3, limit 4: %v", resp.Entries)
	}
	_, err = f.env.As(t, servertest.ShopEditor).Audit(f.ctx, &cpv1.AuditRequest{})
	wantCode(t, err, codes.PermissionDenied, "read AuditEntry")
}

func testProxyStream(t *testing.T, f *fixture) {
	mustApply(t, f, f.env.As(t, servertest.Admin), clusterDoc("shop", "pushed", "10.0.6.1:80"))
	open := func(who string) (cpv1.ConfigPush_StreamClient, error) {
		stream, err := cpv1.NewConfigPushClient(f.env.Conn(t, f.env.Token(t, who), "", "")).Stream(f.ctx)
		if err != nil {
			return nil, err
		}
		hello := &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw-1", Node: "node-" + who}
		if err := stream.Send(&cpv1.StreamRequest{Kind: &cpv1.StreamRequest_Hello{Hello: hello}}); err != nil {
			return nil, err
		}
		return stream, nil
	}
	stream, err := open(servertest.Proxy)
	if err != nil {
		t.Fatal(err)
	}
	update, err := stream.Recv()
	if err != nil {
		t.Fatalf("the proxy got no config: %v", err)
	}
	if update.Version == "" || !strings.Contains(string(update.Documents), "name: pushed") {
		t.Fatalf("the proxy's config lacks its namespace's cluster: version %q\n%s", update.Version, update.Documents)
	}
	ack := &cpv1.Ack{Version: update.Version, Accepted: true}
	if err := stream.Send(&cpv1.StreamRequest{Kind: &cpv1.StreamRequest_Ack{Ack: ack}}); err != nil {
		t.Fatal(err)
	}
	admin := f.env.As(t, servertest.Admin)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := admin.Status(f.ctx, &cpv1.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range st.Proxies {
			found = found || p.Node == "node-proxy" && p.Connected && p.RunningVersion == update.Version
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not show the proxy running %s: %v", update.Version, st.Proxies)
		}
		time.Sleep(50 * time.Millisecond) // polling the push server's status records
	}
	stream.CloseSend()

	// An operator's token is not a proxy's.
	stream, err = open(servertest.Admin)
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.PermissionDenied, "may not act as proxy")
}
