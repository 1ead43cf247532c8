package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/server"
	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/gateway"
	"github.com/portcullis/portcullis/gateway/cpclient"
)

// Static stability across control-plane replicas (SM-DR5): two real daemons
// (server.Server) share one embedded store, as replicas share an etcd cluster,
// and real gateways take their config from them through cpclient over TLS.

// replicaSet is n control-plane replicas on one store, in development mode's
// config (a self-signed certificate, an admin token, an ingress bootstrap token
// for namespace default).
type replicaSet struct {
	replicas   []*replica
	tls        *tls.Config // trusts the replicas' certificate
	adminToken string
	proxyToken string
}

// replica is one running server.Server; stop ends it as an operator's stop
// would (its proxies' streams end; the shared store lives on).
type replica struct {
	name string
	srv  *server.Server
	stop func()
}

func testLogger() *slog.Logger {
	if os.Getenv("PORTCULLIS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startReplicas(t *testing.T, n int) *replicaSet {
	t.Helper()
	dir := t.TempDir()
	base, files, err := server.DevConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: filepath.Join(dir, "store")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the replicas' cleanups, which run first
	rs := &replicaSet{adminToken: readToken(t, files.AdminToken), proxyToken: readToken(t, files.ProxyToken)}
	pem, err := os.ReadFile(files.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", files.CertFile)
	}
	rs.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	for i := range n {
		cfg := *base
		cfg.Name = fmt.Sprintf("replica-%d", i)
		cfg.Listen, cfg.HTTPListen = "127.0.0.1:0", "127.0.0.1:0"
		srv, err := server.New(ctx, server.Options{Config: &cfg, Store: st, Logger: testLogger().With("replica", cfg.Name)})
		if err != nil {
			t.Fatalf("starting %s: %v", cfg.Name, err)
		}
		runCtx, stopRun := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Run(runCtx) }()
		r := &replica{name: cfg.Name, srv: srv}
		r.stop = sync.OnceFunc(func() {
			stopRun()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s stopped with: %v", r.name, err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("%s did not stop within 20s", r.name)
			}
		})
		t.Cleanup(r.stop)
		rs.replicas = append(rs.replicas, r)
	}
	return rs
}

func readToken(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// admin dials r's admin API as the admin token's principal.
func (rs *replicaSet) admin(t *testing.T, r *replica) (cpv1.ResourcesClient, context.Context) {
	t.Helper()
	conn, err := grpc.NewClient(r.srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(rs.tls.Clone())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return cpv1.NewResourcesClient(conn), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+rs.adminToken)
}

// apply writes docs through r's admin API; the write is acknowledged (stored)
// when it returns.
func (rs *replicaSet) apply(t *testing.T, r *replica, docs string) {
	t.Helper()
	c, ctx := rs.admin(t, r)
	resp, err := c.Apply(ctx, &cpv1.ApplyRequest{Documents: []byte(docs)})
	if err != nil {
		t.Fatalf("apply through %s: %v", r.name, err)
	}
	for _, res := range resp.GetResults() {
		if res.GetNewVersion() == "" {
			t.Fatalf("apply through %s: %s/%s was not written: %v", r.name, res.GetKind(), res.GetName(), res)
		}
	}
}

// status polls r's admin Status until cond holds for node.
func (rs *replicaSet) status(t *testing.T, r *replica, node string, cond func(*cpv1.ProxyStatus) bool) *cpv1.ProxyStatus {
	t.Helper()
	c, ctx := rs.admin(t, r)
	deadline := time.Now().Add(10 * time.Second)
	var last *cpv1.ProxyStatus
	for time.Now().Before(deadline) {
		resp, err := c.Status(ctx, &cpv1.StatusRequest{})
		if err != nil {
			t.Fatalf("status from %s: %v", r.name, err)
		}
		for _, p := range resp.GetProxies() {
			if p.GetNode() == node {
				if last = p; cond(p) {
					return p
				}
			}
		}
		time.Sleep(20 * time.Millisecond) // polling the push servers' status records
	}
	t.Fatalf("status of %s from %s never met the condition; last %v", node, r.name, last)
	return nil
}

// connected reads portcullis_controlplane_proxies_connected from r's /metrics.
func (rs *replicaSet) connected(t *testing.T, r *replica) int {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: rs.tls.Clone()}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + r.srv.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", r.name, err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		series, value, ok := strings.Cut(sc.Text(), " ")
		if ok && strings.HasPrefix(series, "portcullis_controlplane_proxies_connected{") {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("metrics of %s: %q", r.name, sc.Text())
			}
			n += int(v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// site is an ingress config in namespace default whose listener answers body.
func site(body string) string {
	return `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: pub, namespace: default}
spec: {address: "127.0.0.1:0"}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: web, namespace: default}
spec:
  listeners: [pub]
  rules:
    - directResponse: {status: 200, body: "` + body + `"}
`
}

// proxy is a real ingress gateway fed by cpclient.
type proxy struct {
	g    *gateway.Gateway
	node string
}

// startProxy runs a gateway taking its config from addrs. The backoff is long
// (10 s at least) so that a test finishing in seconds shows the client moved to
// another replica without waiting for it.
func startProxy(t *testing.T, rs *replicaSet, node string, addrs ...string) *proxy {
	t.Helper()
	log := testLogger().With("proxy", node)
	g, err := gateway.New(gateway.Options{Role: gateway.RoleIngress, Dynamic: true, AdminAddr: "127.0.0.1:0",
		Logger: log, PollInterval: -1, ShutdownGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := cpclient.Run(ctx, cpclient.Options{Addresses: addrs, TLS: rs.tls.Clone(), Token: rs.proxyToken,
			Role: gateway.RoleIngress, Namespace: "default", Name: "gw", Node: node, DataDir: t.TempDir(),
			Apply: g.Apply, Logger: log, MinBackoff: 20 * time.Second, MaxBackoff: 20 * time.Second})
		if err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		g.Shutdown()
	})
	return &proxy{g: g, node: node}
}

func (p *proxy) url() string {
	if a := p.g.ListenerAddr("default/pub"); a != "" {
		return "http://" + a + "/"
	}
	return ""
}

func get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitServes polls until p answers want, for at most within.
func waitServes(t *testing.T, p *proxy, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		if u := p.url(); u != "" {
			code, b, err := get(http.DefaultClient, u)
			if err == nil && code == 200 && b == want {
				return
			}
			last = fmt.Sprintf("%d %q %v", code, b, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never answered %q within %v (last: %s)", p.node, want, within, last)
}

// The replica a proxy is connected to is stopped while clients load the proxy,
// and v2 is written through the other replica: no request fails, and the proxy
// moves to the surviving replica at once (its backoff is 20 s) and runs v2.
func TestProxyFailsOverToTheSurvivingReplica(t *testing.T) {
	rs := startReplicas(t, 2)
	rs.apply(t, rs.replicas[0], site("v1"))
	p := startProxy(t, rs, "gw-0", rs.replicas[0].srv.GRPCAddr(), rs.replicas[1].srv.GRPCAddr())
	waitServes(t, p, "v1", 10*time.Second)

	var lost, survivor *replica
	deadline := time.Now().Add(10 * time.Second)
	for lost == nil {
		switch c0, c1 := rs.connected(t, rs.replicas[0]), rs.connected(t, rs.replicas[1]); {
		case c0 == 1 && c1 == 0:
			lost, survivor = rs.replicas[0], rs.replicas[1]
		case c0 == 0 && c1 == 1:
			lost, survivor = rs.replicas[1], rs.replicas[0]
		case time.Now().After(deadline):
			t.Fatalf("proxies connected: %d and %d; want the one proxy on one replica", c0, c1)
		default:
			time.Sleep(20 * time.Millisecond) // polling the replicas' metrics
		}
	}
	v1 := rs.status(t, lost, p.node, func(s *cpv1.ProxyStatus) bool { return s.GetRunningVersion() != "" }).GetRunningVersion()

	// The load: 4 clients for about 2 s, or until v2 is served if that is later.
	url := p.url()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	sawV2 := make(chan struct{})
	var sawV2Once sync.Once
	loadStart := time.Now()
	hardStop := loadStart.Add(20 * time.Second) // bounds the loop if the test stalls
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(hardStop) {
				select {
				case <-stop:
					return
				default:
				}
				code, b, err := get(client, url)
				if err != nil || code != 200 || (b != "v1" && b != "v2") {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %q %v", code, b, err))
					continue
				}
				ok.Add(1)
				if b == "v2" {
					sawV2Once.Do(func() { close(sawV2) })
				}
			}
		}()
	}
	stopLoad := func() {
		close(stop)
		wg.Wait()
	}

	for ok.Load()+failed.Load() < 100 { // the load runs on v1 before the loss
		if time.Now().After(hardStop) {
			stopLoad()
			t.Fatal("the load stalled before the loss")
		}
		time.Sleep(2 * time.Millisecond)
	}
	lost.stop()
	written := time.Now()
	rs.apply(t, survivor, site("v2"))
	select {
	case <-sawV2:
		t.Logf("v2 served %v after the write through %s, %s being stopped", time.Since(written).Round(time.Millisecond), survivor.name, lost.name)
	case <-time.After(5 * time.Second):
		stopLoad()
		t.Fatalf("the proxy did not serve v2 within 5s of the write through %s (its backoff is 20 s: it did not move at once)", survivor.name)
	}
	if rest := time.Until(loadStart.Add(2 * time.Second)); rest > 0 {
		time.Sleep(rest) // the load runs its ~2 s
	}
	stopLoad()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d of %d requests failed across the loss of %s (first: %v); want none", failed.Load(), ok.Load()+failed.Load(), lost.name, firstErr.Load())
	}
	st := rs.status(t, survivor, p.node, func(s *cpv1.ProxyStatus) bool {
		return s.GetConnected() && s.GetRunningVersion() != v1 && s.GetRunningVersion() == s.GetSentVersion()
	})
	if n := rs.connected(t, survivor); n != 1 {
		t.Errorf("%s counts %d connected proxies; want the one that moved to it", survivor.name, n)
	}
	t.Logf("%d requests, none failed; %s now runs %s (was %s) through %s", ok.Load(), p.node, st.GetRunningVersion(), v1, survivor.name)
}

// A write acknowledged by one replica reaches the proxies of every replica: both
// follow the one store.
func TestWriteThroughOneReplicaReachesProxiesOfBoth(t *testing.T) {
	rs := startReplicas(t, 2)
	r0, r1 := rs.replicas[0], rs.replicas[1]
	rs.apply(t, r1, site("v1"))
	a := startProxy(t, rs, "gw-a", r0.srv.GRPCAddr())
	b := startProxy(t, rs, "gw-b", r1.srv.GRPCAddr())
	waitServes(t, a, "v1", 10*time.Second)
	waitServes(t, b, "v1", 10*time.Second)
	v1 := rs.status(t, r0, a.node, func(s *cpv1.ProxyStatus) bool { return s.GetRunningVersion() != "" }).GetRunningVersion()
	if c0, c1 := rs.connected(t, r0), rs.connected(t, r1); c0 != 1 || c1 != 1 {
		t.Fatalf("proxies connected: %d to %s, %d to %s; want one on each", c0, r0.name, c1, r1.name)
	}

	rs.apply(t, r0, site("v2"))
	waitServes(t, a, "v2", 5*time.Second)
	waitServes(t, b, "v2", 5*time.Second)
	acked := func(s *cpv1.ProxyStatus) bool {
		return s.GetConnected() && s.GetRunningVersion() != v1 && s.GetRunningVersion() == s.GetSentVersion()
	}
	// Each replica reports both proxies: its own live, the other's from the store.
	for _, r := range rs.replicas {
		va := rs.status(t, r, a.node, acked).GetRunningVersion()
		vb := rs.status(t, r, b.node, acked).GetRunningVersion()
		if va != vb {
			t.Errorf("%s reports %s running %s and %s running %s; want the same version: one store, one digest", r.name, a.node, va, b.node, vb)
		}
	}
}
