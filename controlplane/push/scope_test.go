package push

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/gateway/config"
)

const hdr = "apiVersion: portcullis.dev/v1alpha1\n"

// meshView is a store view of one namespace with n workloads, each with its
// sidecar's listener, route, cluster and policy, plus the namespace's Telemetry.
// The documents are written as the store holds them, one per key, without a
// round trip through the decoder (a 5,000-resource mesh would make the test slow).
func meshView(t testing.TB, n int) *resources.View {
	t.Helper()
	v := &resources.View{Revision: 1, ByKey: map[string]resources.Resource{}}
	add := func(kind, name, doc string) {
		v.ByKey[resources.Key(kind, "mesh", name)] = resources.Resource{Kind: kind, Namespace: "mesh", Name: name,
			Version: int64(len(v.ByKey) + 1), YAML: []byte(hdr + "kind: " + kind + "\n" + doc)}
	}
	add(config.KindTelemetry, "telemetry", "metadata: {name: telemetry, namespace: mesh}\nspec: {accessLog: errors}\n")
	for i := range n {
		w := fmt.Sprintf("w-%04d", i)
		add(config.KindWorkload, w, fmt.Sprintf("metadata: {name: %[1]s, namespace: mesh}\n"+
			"spec: {serviceAccount: %[1]s, inbound: [{port: 8080, protocol: HTTP, appPort: 18080}]}\n", w))
		add(config.KindAuthorizationPolicy, w, fmt.Sprintf("metadata: {name: %[1]s, namespace: mesh}\n"+
			"spec: {workload: %[1]s, action: ALLOW, rules: [{methods: [GET]}]}\n", w))
		add(config.KindListener, w+"-in", fmt.Sprintf("metadata: {name: %[1]s-in, namespace: mesh, labels: {portcullis.dev/workload: %[1]s}}\n"+
			"spec: {address: \"127.0.0.1:%[2]d\"}\n", w, 20000+i))
		add(config.KindRoute, w+"-in", fmt.Sprintf("metadata: {name: %[1]s-in, namespace: mesh, labels: {portcullis.dev/workload: %[1]s}}\n"+
			"spec: {listeners: [%[1]s-in], rules: [{forward: {backends: [{cluster: %[1]s-app}]}}]}\n", w))
		add(config.KindCluster, w+"-app", fmt.Sprintf("metadata: {name: %[1]s-app, namespace: mesh}\n"+
			"spec: {endpoints: [{address: \"127.0.0.1:18080\"}]}\n", w))
	}
	return v
}

func keys(es []*entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, strings.TrimPrefix(e.key, resources.Prefix))
	}
	return out
}

// A sidecar's config holds its own workload's resources only: with 1,000
// workloads in its namespace it receives what it receives with 10, byte for byte.
func TestSidecarScopeDoesNotGrowWithTheMesh(t *testing.T) {
	id := identity{role: RoleSidecar, namespace: "mesh", name: "w-0007"}
	small := buildCatalog(nil, meshView(t, 10), 1)
	large := buildCatalog(nil, meshView(t, 1000), 2)
	if n := len(large.entries); n != 5001 {
		t.Fatalf("the large view holds %d resources; want 5001", n)
	}

	got := keys(large.scope(id))
	want := []string{
		"AuthorizationPolicy/mesh/w-0007", "Cluster/mesh/w-0007-app", "Listener/mesh/w-0007-in",
		"Route/mesh/w-0007-in", "Telemetry/mesh/telemetry", "Workload/mesh/w-0007",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("sidecar %s among 1,000 workloads receives\n%v\nwant\n%v", id, got, want)
	}

	rs, _ := render(small.scope(id), nil)
	rl, set := render(large.scope(id), nil)
	if rs.err != nil || rl.err != nil {
		t.Fatal(rs.err, rl.err)
	}
	if string(rs.docs) != string(rl.docs) || rs.version != rl.version {
		t.Errorf("the sidecar's config differs between a 10- and a 1,000-workload mesh (%d vs %d bytes)", len(rs.docs), len(rl.docs))
	}
	if err := config.Validate(set); err != nil {
		t.Errorf("the scoped config does not validate: %v", err)
	}
	// What is sent parses to what was validated.
	if parsed, err := config.Parse("scoped", rl.docs); err != nil || parsed.Len() != set.Len() {
		t.Errorf("the sent documents parse to %v resources (%v); want the %d validated", parsed, err, set.Len())
	}

	// The ingress of the namespace, by contrast, receives every listener, route
	// and cluster: 3,000 resources and the Telemetry.
	if n := len(large.scope(identity{role: RoleIngress, namespace: "mesh", name: "gw"})); n != 3001 {
		t.Errorf("ingress scope has %d resources; want 3001", n)
	}
}

func TestVersionDependsOnScopedContentOnly(t *testing.T) {
	v := meshView(t, 3)
	id := identity{role: RoleSidecar, namespace: "mesh", name: "w-0001"}
	c1 := buildCatalog(nil, v, 1)
	before, _ := render(c1.scope(id), nil)

	// Another workload's route changes; the resource this sidecar sees do not.
	next := &resources.View{Revision: 2, ByKey: map[string]resources.Resource{}}
	for k, r := range v.ByKey {
		next.ByKey[k] = r
	}
	key := resources.Key(config.KindRoute, "mesh", "w-0002-in")
	r := next.ByKey[key]
	r.YAML = []byte(strings.Replace(string(r.YAML), "w-0002-app", "w-0000-app", 1))
	r.Version = 100
	next.ByKey[key] = r
	c2 := buildCatalog(c1, next, 2)
	if after, _ := render(c2.scope(id), nil); after.version != before.version {
		t.Errorf("an unrelated change moved the version from %s to %s", before.version, after.version)
	}
	if c2.entries[resources.Key(config.KindWorkload, "mesh", "w-0001")] != c1.entries[resources.Key(config.KindWorkload, "mesh", "w-0001")] {
		t.Error("an unchanged resource was decoded again instead of reused")
	}

	// Its own cluster changes: a new version.
	key = resources.Key(config.KindCluster, "mesh", "w-0001-app")
	r = next.ByKey[key]
	r.YAML = []byte(strings.Replace(string(r.YAML), "18080", "18081", 1))
	r.Version = 101
	next.ByKey[key] = r
	c3 := buildCatalog(c2, next, 3)
	if after, _ := render(c3.scope(id), nil); after.version == before.version {
		t.Error("a change in scope kept the version")
	}
}

func TestRouteReferencesAreClosedOver(t *testing.T) {
	v := meshView(t, 2)
	// The sidecar's route is labelled; its listener and cluster are not.
	for _, k := range []string{resources.Key(config.KindListener, "mesh", "w-0001-in")} {
		r := v.ByKey[k]
		r.YAML = []byte(strings.Replace(string(r.YAML), "portcullis.dev/workload: w-0001", "team: a", 1))
		v.ByKey[k] = r
	}
	got := keys(buildCatalog(nil, v, 1).scope(identity{role: RoleSidecar, namespace: "mesh", name: "w-0001"}))
	joined := strings.Join(got, " ")
	for _, want := range []string{"Listener/mesh/w-0001-in", "Cluster/mesh/w-0001-app"} {
		if !strings.Contains(joined, want) {
			t.Errorf("scope %v lacks %s, which its route names", got, want)
		}
	}
}

func TestUndecodableStoredResourceIsAScopingError(t *testing.T) {
	v := meshView(t, 1)
	k := resources.Key(config.KindCluster, "mesh", "w-0000-app")
	r := v.ByKey[k]
	r.YAML = []byte(hdr + "kind: Cluster\nmetadata: {name: w-0000-app, namespace: mesh}\nspec: {endpoint: []}\n")
	v.ByKey[k] = r
	got, _ := render(buildCatalog(nil, v, 1).scope(identity{role: RoleSidecar, namespace: "mesh", name: "w-0000"}), nil)
	if got.err == nil || !strings.Contains(got.err.Error(), "endpoint") {
		t.Errorf("render error = %v; want the decoding error naming the field", got.err)
	}
}

func TestOfferKeepsOnlyTheNewest(t *testing.T) {
	c := newProxyConn(identity{RoleIngress, "ns", "gw"}, "n", "c1", &cpv1.Hello{RunningVersion: "v0"}, time.Now())
	c.offer(&update{gen: 1, rendered: rendered{version: "v0"}})
	if len(c.notify) != 0 {
		t.Fatal("the version the proxy runs was offered again")
	}
	c.offer(&update{gen: 3, rendered: rendered{version: "v3"}})
	c.offer(&update{gen: 2, rendered: rendered{version: "v2"}}) // late: ignored
	c.offer(&update{gen: 4, rendered: rendered{version: "v4"}})
	if u := c.take(time.Now()); u == nil || u.version != "v4" {
		t.Fatalf("took %+v; want v4 (the newest offer)", u)
	}
	if u := c.take(time.Now()); u != nil {
		t.Fatalf("took %s twice", u.version)
	}
	// An invalid scope withdraws a pending offer; the same valid version is offered
	// again once the scope is valid.
	c.offer(&update{gen: 5, rendered: rendered{version: "v5"}})
	if !c.offer(&update{gen: 6, rendered: rendered{err: errors.New("bad")}}) || c.record(time.Now()).ScopeError != "bad" {
		t.Fatal("a scoping error was not recorded")
	}
	if u := c.take(time.Now()); u != nil {
		t.Fatalf("took %s after the scope became invalid", u.version)
	}
	c.offer(&update{gen: 7, rendered: rendered{version: "v5"}})
	if u := c.take(time.Now()); u == nil || u.version != "v5" {
		t.Fatalf("took %+v; want v5 again", u)
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc…"},
		{"aé", 2, "a…"}, // é is two bytes: not split
	} {
		if got := clip(tc.in, tc.n); got != tc.want {
			t.Errorf("clip(%q, %d) = %q; want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// An egress also receives its namespace's ExternalServices and EgressPolicies; an
// ingress does not.
func TestEgressReceivesItsPolicies(t *testing.T) {
	v := meshView(t, 1)
	for kind, doc := range map[string]string{
		config.KindExternalService: "metadata: {name: api, namespace: mesh}\nspec: {hosts: [api.example.com], ports: [443]}\n",
		config.KindEgressPolicy:    "metadata: {name: api, namespace: mesh}\nspec: {from: [\"spiffe://mesh/*\"], to: [api]}\n",
	} {
		v.ByKey[resources.Key(kind, "mesh", "api")] = resources.Resource{Kind: kind, Namespace: "mesh", Name: "api", Version: 99, YAML: []byte(hdr + "kind: " + kind + "\n" + doc)}
	}
	c := buildCatalog(nil, v, 1)
	has := func(es []*entry, key string) bool {
		for _, e := range es {
			if e.key == resources.Prefix+key {
				return true
			}
		}
		return false
	}
	egress, ingress := c.scope(identity{RoleEgress, "mesh", "out"}), c.scope(identity{RoleIngress, "mesh", "in"})
	for _, k := range []string{"ExternalService/mesh/api", "EgressPolicy/mesh/api", "Route/mesh/w-0000-in"} {
		if !has(egress, k) {
			t.Errorf("egress scope %v lacks %s", keys(egress), k)
		}
	}
	if has(ingress, "ExternalService/mesh/api") || has(ingress, "EgressPolicy/mesh/api") || has(ingress, "Workload/mesh/w-0000") {
		t.Errorf("ingress scope %v holds egress or sidecar kinds", keys(ingress))
	}
	if r, set := render(egress, nil); r.err != nil || config.Validate(set) != nil {
		t.Errorf("egress scope does not validate: %v %v", r.err, config.Validate(set))
	}
}
