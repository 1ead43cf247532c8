package push_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/push"
	"github.com/portcullis/portcullis/controlplane/push/pushtest"
	"github.com/portcullis/portcullis/gateway/config"
)

const hdr = "apiVersion: portcullis.dev/v1alpha1\n"

// shopIngress is an ingress config in namespace shop; body is the direct response.
func shopIngress(body string) string {
	return hdr + `kind: Listener
metadata: {name: pub, namespace: shop}
spec: {address: "127.0.0.1:0"}
---
` + hdr + `kind: Route
metadata: {name: web, namespace: shop}
spec:
  listeners: [pub]
  rules:
    - match: {path: {prefix: /api}}
      forward: {backends: [{cluster: api}]}
    - directResponse: {status: 200, body: "` + body + `"}
---
` + hdr + `kind: Cluster
metadata: {name: api, namespace: shop}
spec: {endpoints: [{address: "127.0.0.1:9"}]}
---
` + hdr + `kind: Telemetry
metadata: {name: telemetry, namespace: shop}
spec: {accessLog: errors}
`
}

// sidecarDocs are the resources of one workload's sidecar in namespace ns.
func sidecarDocs(ns, workload string) string {
	return fmt.Sprintf(hdr+`kind: Workload
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  serviceAccount: %[2]s
  inbound: [{port: 8080, protocol: HTTP, appPort: 18080}]
---
`+hdr+`kind: AuthorizationPolicy
metadata: {name: %[2]s-allow, namespace: %[1]s}
spec:
  workload: %[2]s
  action: ALLOW
  rules: [{methods: [GET]}]
---
`+hdr+`kind: Listener
metadata: {name: %[2]s-in, namespace: %[1]s, labels: {portcullis.dev/workload: %[2]s}}
spec: {address: "127.0.0.1:15006"}
---
`+hdr+`kind: Route
metadata: {name: %[2]s-in, namespace: %[1]s, labels: {portcullis.dev/workload: %[2]s}}
spec:
  listeners: [%[2]s-in]
  rules: [{forward: {backends: [{cluster: %[2]s-app}]}}]
---
`+hdr+`kind: Cluster
metadata: {name: %[2]s-app, namespace: %[1]s}
spec: {endpoints: [{address: "127.0.0.1:18080"}]}
`, ns, workload)
}

// fakeProxy is a proxy's side of one stream, driven by the test.
type fakeProxy struct {
	t       *testing.T
	stream  cpv1.ConfigPush_StreamClient
	updates chan *cpv1.ConfigUpdate
	ended   chan error
	cancel  context.CancelFunc
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// connect opens a stream with token and sends hello.
func connect(t *testing.T, cc *grpc.ClientConn, token string, hello *cpv1.Hello) *fakeProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	stream, err := cpv1.NewConfigPushClient(cc).Stream(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if hello != nil {
		if err := stream.Send(&cpv1.StreamRequest{Kind: &cpv1.StreamRequest_Hello{Hello: hello}}); err != nil {
			cancel()
			t.Fatal(err)
		}
	}
	p := &fakeProxy{t: t, stream: stream, updates: make(chan *cpv1.ConfigUpdate, 16), ended: make(chan error, 1), cancel: cancel}
	go func() {
		for {
			u, err := stream.Recv()
			if err != nil {
				p.ended <- err
				return
			}
			p.updates <- u
		}
	}()
	t.Cleanup(cancel)
	return p
}

func (p *fakeProxy) next() *cpv1.ConfigUpdate {
	p.t.Helper()
	select {
	case u := <-p.updates:
		return u
	case err := <-p.ended:
		p.t.Fatalf("stream ended instead of sending an update: %v", err)
	case <-time.After(10 * time.Second):
		p.t.Fatal("no config update within 10s")
	}
	return nil
}

func (p *fakeProxy) ack(u *cpv1.ConfigUpdate, refusal string) {
	p.t.Helper()
	a := &cpv1.Ack{Version: u.GetVersion(), Accepted: refusal == "", Error: refusal}
	if err := p.stream.Send(&cpv1.StreamRequest{Kind: &cpv1.StreamRequest_Ack{Ack: a}}); err != nil {
		p.t.Fatal(err)
	}
}

// endCode waits for the stream to end and returns its status code.
func (p *fakeProxy) endCode() (codes.Code, string) {
	p.t.Helper()
	select {
	case u := <-p.updates:
		p.t.Fatalf("got config version %s; want the stream refused", u.GetVersion())
	case err := <-p.ended:
		s := status.Convert(err)
		return s.Code(), s.Message()
	case <-time.After(10 * time.Second):
		p.t.Fatal("the stream was not ended within 10s")
	}
	return 0, ""
}

// noUpdateFor fails if an update arrives within d. It is only used after the
// server has provably processed the change (waitPublished), to catch a push that
// should not have happened.
func (p *fakeProxy) noUpdateFor(d time.Duration) {
	p.t.Helper()
	select {
	case u := <-p.updates:
		p.t.Fatalf("unexpected config update to version %s:\n%s", u.GetVersion(), u.GetDocuments())
	case <-time.After(d):
	}
}

func parse(t *testing.T, u *cpv1.ConfigUpdate) *config.Set {
	t.Helper()
	set, err := config.Parse("update "+u.GetVersion(), u.GetDocuments())
	if err != nil {
		t.Fatalf("update %s does not parse: %v", u.GetVersion(), err)
	}
	return set
}

func names(set *config.Set) []string {
	var out []string
	for _, d := range set.Documents() {
		out = append(out, d.Kind+" "+d.Metadata.Namespace+"/"+d.Metadata.Name)
	}
	return out
}

// metric returns the value of a counter or gauge (summed over label values that
// match labels) or the sample count of a histogram.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				total += m.GetCounter().GetValue()
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			case m.Histogram != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.GetLabel() {
			found = found || (l.GetName() == k && l.GetValue() == v)
		}
		if !found {
			return false
		}
	}
	return true
}

// waitPublished waits until the push server has offered every proxy its scope at
// store revision rev or later.
func waitPublished(t *testing.T, cp *pushtest.ControlPlane, rev int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, cp.Registry(), "portcullis_controlplane_config_revision", nil) < float64(rev) {
		if time.Now().After(deadline) {
			t.Fatalf("the push server did not reach revision %d within 10s", rev)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// statusOf polls Status until cond holds for node's entry.
func statusOf(t *testing.T, s interface {
	Status(context.Context) ([]*cpv1.ProxyStatus, error)
}, node string, cond func(*cpv1.ProxyStatus) bool) *cpv1.ProxyStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last *cpv1.ProxyStatus
	for time.Now().Before(deadline) {
		list, err := s.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range list {
			if p.GetNode() == node {
				last = p
				if cond(p) {
					return p
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("status of node %s never met the condition; last: %v", node, last)
	return nil
}

func TestProxyReceivesItsScopedConfig(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopIngress("v1") + "---\n" + sidecarDocs("shop", "cart") + "---\n" + strings.ReplaceAll(shopIngress("other"), "shop", "other"))
	cc := dial(t, cp.Addr)

	ingress := connect(t, cc, cp.Token("ingress", "shop", "gw"), &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "gw-0"})
	got := names(parse(t, ingress.next()))
	// Every Listener, Route, Cluster and Telemetry of shop, and nothing of another
	// namespace or kind (no Workload, no AuthorizationPolicy).
	want := []string{"Listener shop/cart-in", "Listener shop/pub", "Route shop/cart-in", "Route shop/web",
		"Cluster shop/api", "Cluster shop/cart-app", "Telemetry shop/telemetry"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("ingress shop/gw received %v; want %v", got, want)
	}

	sidecar := connect(t, cc, cp.Token("sidecar", "shop", "cart"), &cpv1.Hello{Role: "sidecar", Namespace: "shop", Name: "cart", Node: "cart-0"})
	got = names(parse(t, sidecar.next()))
	// Its Workload and policy, its labelled listener and route, the cluster the
	// route names (unlabelled), the namespace's Telemetry; not the ingress's.
	want = []string{"Listener shop/cart-in", "Route shop/cart-in", "Cluster shop/cart-app", "Telemetry shop/telemetry",
		"AuthorizationPolicy shop/cart-allow", "Workload shop/cart"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("sidecar shop/cart received %v; want %v", got, want)
	}
}

func TestWritesReachProxyAndUnrelatedWritesDoNot(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopIngress("v1"))
	cc := dial(t, cp.Addr)
	p := connect(t, cc, cp.Token("ingress", "shop", "gw"), &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "gw-0"})
	v1 := p.next()
	p.ack(v1, "")
	pushes := metric(t, cp.Registry(), "portcullis_controlplane_pushes_total", nil)

	// A write in another namespace, and a write of a kind an ingress does not
	// receive: neither changes the scope, so nothing is pushed.
	rev := cp.Apply(strings.ReplaceAll(shopIngress("elsewhere"), "shop", "other") + "---\n" +
		hdr + "kind: Workload\nmetadata: {name: cart, namespace: shop}\nspec: {serviceAccount: cart, inbound: [{port: 8080, protocol: HTTP, appPort: 18080}]}\n")
	waitPublished(t, cp, rev)
	p.noUpdateFor(200 * time.Millisecond)

	// A write in scope is pushed with a new version that carries it.
	cp.Apply(strings.Replace(shopIngress("v2"), "cluster: api", "cluster: api2", 1) + "---\n" + hdr + `kind: Cluster
metadata: {name: api2, namespace: shop}
spec: {endpoints: [{address: "127.0.0.1:10"}]}
`)
	v2 := p.next()
	if v2.GetVersion() == v1.GetVersion() {
		t.Fatalf("the change in scope kept version %s", v1.GetVersion())
	}
	set := parse(t, v2)
	if body := set.Routes[0].Spec.Rules[1].DirectResponse.Body; body != "v2" {
		t.Errorf("the pushed route's body is %q; want the written v2", body)
	}
	if len(set.Clusters) != 2 {
		t.Errorf("got %v; want clusters api and api2", names(set))
	}
	if n := metric(t, cp.Registry(), "portcullis_controlplane_pushes_total", nil); n != pushes+1 {
		t.Errorf("pushes_total went from %v to %v; want exactly one more push", pushes, n)
	}
	p.ack(v2, "")
	statusOf(t, cp.Push(), "gw-0", func(s *cpv1.ProxyStatus) bool { return s.GetRunningVersion() == v2.GetVersion() })
	if n := metric(t, cp.Registry(), "portcullis_controlplane_push_ack_seconds", nil); n < 2 {
		t.Errorf("push-to-ACK histogram has %v samples; want one per acknowledged push (2)", n)
	}
}

func TestHelloIsCheckedAgainstTheCredential(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{HelloTimeout: 300 * time.Millisecond})
	cp.Apply(shopIngress("v1"))
	cc := dial(t, cp.Addr)
	gwToken := cp.Token("ingress", "shop", "gw")
	anyToken := cp.Token("sidecar", "shop", "*")

	cases := []struct {
		name  string
		token string
		hello *cpv1.Hello
		code  codes.Code
	}{
		{"another name", gwToken, &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "admin-gw", Node: "n1"}, codes.PermissionDenied},
		{"another namespace", gwToken, &cpv1.Hello{Role: "ingress", Namespace: "other", Name: "gw", Node: "n1"}, codes.PermissionDenied},
		{"another role", gwToken, &cpv1.Hello{Role: "egress", Namespace: "shop", Name: "gw", Node: "n1"}, codes.PermissionDenied},
		{"wildcard name, other namespace", anyToken, &cpv1.Hello{Role: "sidecar", Namespace: "other", Name: "cart", Node: "n1"}, codes.PermissionDenied},
		{"no token", "", &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "n1"}, codes.Unauthenticated},
		{"unknown role", gwToken, &cpv1.Hello{Role: "mesh", Namespace: "shop", Name: "gw", Node: "n1"}, codes.InvalidArgument},
		{"node with a slash", gwToken, &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "../x"}, codes.InvalidArgument},
		{"no hello", gwToken, nil, codes.DeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := connect(t, cc, tc.token, tc.hello).endCode()
			if code != tc.code {
				t.Errorf("stream ended with %v (%s); want %v", code, msg, tc.code)
			}
		})
	}
	// The wildcard token does admit any name in its namespace.
	if got := names(parse(t, connect(t, cc, anyToken, &cpv1.Hello{Role: "sidecar", Namespace: "shop", Name: "cart", Node: "cart-0"}).next())); len(got) != 1 {
		t.Errorf("sidecar shop/cart received %v; want the namespace's Telemetry only", got)
	}
}

func TestNackIsRecordedInStatus(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopIngress("v1"))
	cc := dial(t, cp.Addr)
	p := connect(t, cc, cp.Token("ingress", "shop", "gw"), &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "gw-0", Build: "test"})
	v1 := p.next()
	p.ack(v1, "")
	cp.Apply(shopIngress("v2"))
	v2 := p.next()
	p.ack(v2, "listener shop/pub: bind: address already in use")

	st := statusOf(t, cp.Push(), "gw-0", func(s *cpv1.ProxyStatus) bool { return s.GetRefusedVersion() == v2.GetVersion() })
	if st.GetRunningVersion() != v1.GetVersion() || st.GetSentVersion() != v2.GetVersion() || !st.GetConnected() ||
		!strings.Contains(st.GetRefusedError(), "address already in use") || st.GetRole() != "ingress" || st.GetName() != "gw" {
		t.Errorf("status = %v; want running %s, sent and refused %s with the proxy's error", st, v1.GetVersion(), v2.GetVersion())
	}
	if n := metric(t, cp.Registry(), "portcullis_controlplane_nacks_total", map[string]string{"role": "ingress"}); n != 1 {
		t.Errorf("nacks_total{role=ingress} = %v; want 1", n)
	}

	// Another replica on the same store serves the same status from the store.
	replica, err := push.NewServer(push.Options{Index: cp.Index, Store: cp.Store})
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	st = statusOf(t, replica, "gw-0", func(s *cpv1.ProxyStatus) bool { return s.GetRefusedVersion() == v2.GetVersion() })
	if !strings.Contains(st.GetRefusedError(), "address already in use") || !st.GetConnected() {
		t.Errorf("the other replica reads %v", st)
	}

	// When the proxy goes, its record says so.
	p.cancel()
	statusOf(t, replica, "gw-0", func(s *cpv1.ProxyStatus) bool { return !s.GetConnected() })
}

func TestReconnectGetsCurrentVersion(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopIngress("v1"))
	cc := dial(t, cp.Addr)
	tok := cp.Token("ingress", "shop", "gw")
	p := connect(t, cc, tok, &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "gw-0"})
	v1 := p.next()
	p.ack(v1, "")
	p.cancel()
	statusOf(t, cp.Push(), "gw-0", func(s *cpv1.ProxyStatus) bool { return !s.GetConnected() })

	rev := cp.Apply(shopIngress("v2"))
	waitPublished(t, cp, rev)
	p = connect(t, cc, tok, &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "gw-0", RunningVersion: v1.GetVersion()})
	v2 := p.next()
	if v2.GetVersion() == v1.GetVersion() || parse(t, v2).Routes[0].Spec.Rules[1].DirectResponse.Body != "v2" {
		t.Fatalf("reconnecting at %s got %s:\n%s\nwant the current config (v2)", v1.GetVersion(), v2.GetVersion(), v2.GetDocuments())
	}
	p.ack(v2, "")
	p.cancel()

	// A proxy that already runs the current version is not sent it again; the
	// server records it as running.
	pushes := metric(t, cp.Registry(), "portcullis_controlplane_pushes_total", nil)
	p = connect(t, cc, tok, &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "gw-1", RunningVersion: v2.GetVersion()})
	statusOf(t, cp.Push(), "gw-1", func(s *cpv1.ProxyStatus) bool { return s.GetConnected() && s.GetRunningVersion() == v2.GetVersion() })
	p.noUpdateFor(200 * time.Millisecond)
	if n := metric(t, cp.Registry(), "portcullis_controlplane_pushes_total", nil); n != pushes {
		t.Errorf("pushes_total went from %v to %v; want no push to a proxy already at the current version", pushes, n)
	}
}

func TestInvalidScopeIsNotSent(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopIngress("v1"))
	cc := dial(t, cp.Addr)
	p := connect(t, cc, cp.Token("ingress", "shop", "gw"), &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "gw-0"})
	v1 := p.next()
	p.ack(v1, "")

	// A second Telemetry in the namespace: each alone is valid, together they are
	// not (at most one per proxy).
	rev := cp.Apply(hdr + "kind: Telemetry\nmetadata: {name: second, namespace: shop}\nspec: {accessLog: all}\n")
	waitPublished(t, cp, rev)
	st := statusOf(t, cp.Push(), "gw-0", func(s *cpv1.ProxyStatus) bool { return s.GetRefusedError() != "" })
	if !strings.Contains(st.GetRefusedError(), "not sent") || !strings.Contains(st.GetRefusedError(), "at most one Telemetry") {
		t.Errorf("status refused_error = %q; want the scoping error", st.GetRefusedError())
	}
	if n := metric(t, cp.Registry(), "portcullis_controlplane_scoping_errors_total", nil); n != 1 {
		t.Errorf("scoping_errors_total = %v; want 1", n)
	}
	p.noUpdateFor(100 * time.Millisecond)

	cp.Delete("Telemetry", "shop", "second")
	cp.Apply(shopIngress("v2"))
	if v2 := p.next(); parse(t, v2).Routes[0].Spec.Rules[1].DirectResponse.Body != "v2" {
		t.Errorf("after the fix got\n%s", v2.GetDocuments())
	}
}

func TestNewerStreamFromTheSameNodeTakesOver(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopIngress("v1"))
	cc := dial(t, cp.Addr)
	tok := cp.Token("ingress", "shop", "gw")
	old := connect(t, cc, tok, &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "gw-0"})
	old.ack(old.next(), "")
	fresh := connect(t, cc, tok, &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "gw-0"})
	fresh.ack(fresh.next(), "")
	if code, _ := old.endCode(); code != codes.Aborted {
		t.Errorf("the older stream ended with %v; want Aborted", code)
	}
	// A different identity may not take a connected node's name.
	other := connect(t, cc, cp.Token("ingress", "shop", "gw2"), &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw2", Node: "gw-0"})
	if code, _ := other.endCode(); code != codes.AlreadyExists {
		t.Errorf("a second identity on node gw-0 got %v; want AlreadyExists", code)
	}
	cp.Apply(shopIngress("v2"))
	if parse(t, fresh.next()).Routes[0].Spec.Rules[1].DirectResponse.Body != "v2" {
		t.Error("the newer stream did not receive the next version")
	}
}

func TestCloseEndsStreamsWithUnavailable(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopIngress("v1"))
	p := connect(t, dial(t, cp.Addr), cp.Token("ingress", "shop", "gw"), &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "gw-0"})
	p.next()
	done := make(chan struct{})
	go func() { cp.Push().Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case err := <-p.ended:
		if status.Code(err) != codes.Unavailable && !errors.Is(err, io.EOF) {
			t.Errorf("stream ended with %v; want Unavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived Close")
	}
}

// Clusters that name a registry service are pushed with the service's endpoints
// filled in (sorted), and pushed again when they change; a change to another
// service's endpoints pushes nothing.
func TestRegistryEndpointsAreFilledIn(t *testing.T) {
	var mu sync.Mutex
	endpoints := map[string][]config.Endpoint{"shop/cart": {{Address: "127.0.0.2:80", Weight: 2}, {Address: "127.0.0.1:80"}}}
	lookup := func(ns, service string) ([]config.Endpoint, bool) {
		mu.Lock()
		defer mu.Unlock()
		eps, ok := endpoints[ns+"/"+service]
		return append([]config.Endpoint(nil), eps...), ok
	}
	setEndpoints := func(key string, eps ...config.Endpoint) {
		mu.Lock()
		endpoints[key] = eps
		mu.Unlock()
	}
	changed := make(chan struct{}, 1)
	cp := pushtest.Start(t, pushtest.Options{Endpoints: lookup, EndpointsChanged: changed})
	cp.Apply(strings.Replace(shopIngress("v1"), "spec: {endpoints: [{address: \"127.0.0.1:9\"}]}", "spec: {registry: {service: cart}}", 1))
	p := connect(t, dial(t, cp.Addr), cp.Token("ingress", "shop", "gw"), &cpv1.Hello{Role: "ingress", Namespace: "shop", Name: "gw", Node: "gw-0"})

	addrs := func(u *cpv1.ConfigUpdate) string {
		c := parse(t, u).Clusters[0]
		if c.Spec.Registry == nil || c.Spec.Registry.Service != "cart" {
			t.Errorf("the pushed cluster lost spec.registry: %+v", c.Spec)
		}
		var out []string
		for _, e := range c.Spec.Endpoints {
			out = append(out, fmt.Sprintf("%s/%d", e.Address, e.Weight))
		}
		return strings.Join(out, " ")
	}
	v1 := p.next()
	if got := addrs(v1); got != "127.0.0.1:80/0 127.0.0.2:80/2" {
		t.Errorf("pushed endpoints %q; want the registry's, sorted by address", got)
	}
	p.ack(v1, "")

	// Another service's endpoints change: the version stays.
	setEndpoints("shop/web", config.Endpoint{Address: "127.0.0.9:80"})
	changed <- struct{}{}
	p.noUpdateFor(200 * time.Millisecond)

	// The cart service loses every endpoint: pushed empty (the proxy answers 503),
	// in one push.
	pushes := metric(t, cp.Registry(), "portcullis_controlplane_pushes_total", nil)
	setEndpoints("shop/cart")
	changed <- struct{}{}
	v2 := p.next()
	if got := addrs(v2); got != "" || v2.GetVersion() == v1.GetVersion() {
		t.Errorf("after the endpoints went, got version %s with %q; want a new version with none", v2.GetVersion(), got)
	}
	if n := metric(t, cp.Registry(), "portcullis_controlplane_pushes_total", nil); n != pushes+1 {
		t.Errorf("pushes_total went from %v to %v; want one push (none for the other service)", pushes, n)
	}
}
