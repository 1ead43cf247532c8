package cpclient_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/push/pushtest"
	"github.com/portcullis/portcullis/gateway"
	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/cpclient"
	"github.com/portcullis/portcullis/internal/testutil"
)

const hdr = "apiVersion: portcullis.dev/v1alpha1\n"

// shopConfig is an ingress config in namespace shop whose listener answers body;
// extraRule is YAML for one more route rule, placed first.
func shopConfig(body, extraRule string) string {
	return hdr + `kind: Listener
metadata: {name: pub, namespace: shop}
spec: {address: "127.0.0.1:0"}
---
` + hdr + `kind: Route
metadata: {name: web, namespace: shop}
spec:
  listeners: [pub]
  rules:
` + extraRule + `    - directResponse: {status: 200, body: "` + body + `"}
`
}

func testLogger() *slog.Logger {
	if os.Getenv("PORTCULLIS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// proxy is a real gateway fed by cpclient.
type proxy struct {
	g      *gateway.Gateway
	cancel context.CancelFunc
	done   chan struct{}
	node   string
}

func startProxy(t *testing.T, cp *pushtest.ControlPlane, node, dataDir string, log *slog.Logger) *proxy {
	t.Helper()
	if log == nil {
		log = testLogger()
	}
	g, err := gateway.New(gateway.Options{Role: gateway.RoleIngress, Dynamic: true, AdminAddr: "127.0.0.1:0",
		Logger: log, PollInterval: -1, ShutdownGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxy{g: g, cancel: cancel, done: make(chan struct{}), node: node}
	opts := cpclient.Options{Addresses: []string{cp.Addr}, Token: cp.Token("ingress", "shop", "gw"),
		Role: "ingress", Namespace: "shop", Name: "gw", Node: node, DataDir: dataDir, Apply: g.Apply,
		Logger: log, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	go func() {
		defer close(p.done)
		if err := cpclient.Run(ctx, opts); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(p.stop)
	return p
}

// stop ends the client, then the gateway, as a process exit would.
func (p *proxy) stop() {
	p.cancel()
	<-p.done
	p.g.Shutdown()
}

func (p *proxy) url() string {
	if a := p.g.ListenerAddr("shop/pub"); a != "" {
		return "http://" + a + "/"
	}
	return ""
}

// body GETs url and returns the status and body.
func body(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitServes polls until the proxy answers want.
func waitServes(t *testing.T, p *proxy, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if u := p.url(); u != "" {
			code, b, err := body(http.DefaultClient, u)
			if err == nil && code == 200 && b == want {
				return
			}
			last = b
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the proxy never answered %q (last %q)", want, last)
}

// statusOf polls the control plane's Status until cond holds for node.
func statusOf(t *testing.T, cp *pushtest.ControlPlane, node string, cond func(*cpv1.ProxyStatus) bool) *cpv1.ProxyStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last *cpv1.ProxyStatus
	for time.Now().Before(deadline) {
		if ps := cp.Push(); ps != nil {
			list, err := ps.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range list {
				if s.GetNode() == node {
					if last = s; cond(s) {
						return s
					}
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("status of %s never met the condition; last %v", node, last)
	return nil
}

// A config that validates but does not compile (a route regex that is not RE2)
// is refused by the proxy with the reason, recorded as a NACK, and the proxy
// keeps serving the config it had.
func TestCompileFailureIsNackedAndOldConfigKeepsServing(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopConfig("v1", ""))
	dir := t.TempDir()
	p := startProxy(t, cp, "gw-0", dir, nil)
	waitServes(t, p, "v1")
	v1 := statusOf(t, cp, "gw-0", func(s *cpv1.ProxyStatus) bool { return s.GetRunningVersion() != "" }).GetRunningVersion()

	cp.Apply(shopConfig("v2", "    - match: {path: {regex: \"/(unclosed\"}}\n      directResponse: {status: 418}\n"))
	st := statusOf(t, cp, "gw-0", func(s *cpv1.ProxyStatus) bool { return s.GetRefusedVersion() != "" })
	if st.GetRunningVersion() != v1 || st.GetRefusedVersion() != st.GetSentVersion() || !strings.Contains(st.GetRefusedError(), "regex") {
		t.Errorf("status %v; want v2 refused for its regex while %s runs", st, v1)
	}
	for range 20 {
		code, b, err := body(http.DefaultClient, p.url())
		if err != nil || code != 200 || b != "v1" {
			t.Fatalf("after the NACK the proxy answered %d %q %v; want the old config's 200 v1", code, b, err)
		}
	}
	lkg, err := os.ReadFile(filepath.Join(dir, cpclient.LKGFile))
	if err != nil || !strings.Contains(string(lkg), v1) || strings.Contains(string(lkg), "v2") {
		t.Errorf("the last-known-good file holds\n%s\n(%v); want v1 (%s) only", lkg, err, v1)
	}
}

// A proxy restarted while the control plane is down starts from its
// last-known-good config and serves, then picks up new versions once the control
// plane is back.
func TestRestartWithoutControlPlaneServesLastKnownGood(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopConfig("v1", ""))
	dir := t.TempDir()
	first := startProxy(t, cp, "gw-0", dir, nil)
	waitServes(t, first, "v1")
	v1 := statusOf(t, cp, "gw-0", func(s *cpv1.ProxyStatus) bool { return s.GetRunningVersion() != "" }).GetRunningVersion()
	first.stop()
	cp.Stop()

	second := startProxy(t, cp, "gw-0", dir, nil)
	waitServes(t, second, "v1")
	resp, err := http.Get("http://" + second.g.AdminAddr() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz on the last-known-good config: %v %v; want 200", resp, err)
	}
	resp.Body.Close()

	cp.Restart()
	st := statusOf(t, cp, "gw-0", func(s *cpv1.ProxyStatus) bool { return s.GetConnected() })
	if st.GetRunningVersion() != v1 || st.GetSentVersion() != "" {
		t.Errorf("after reconnecting: %v; want running %s and nothing sent (it already runs the current version)", st, v1)
	}
	cp.Apply(shopConfig("v2", ""))
	waitServes(t, second, "v2")
}

// Without a last-known-good config the proxy has no listener and is not ready
// until the control plane sends the first config.
func TestNotReadyUntilTheFirstConfig(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopConfig("v1", ""))
	cp.Stop()
	p := startProxy(t, cp, "gw-0", t.TempDir(), nil)
	resp, err := http.Get("http://" + p.g.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || p.url() != "" {
		t.Errorf("before any config: /readyz %d, listener %q; want 503 and none", resp.StatusCode, p.url())
	}
	cp.Restart()
	waitServes(t, p, "v1")
	if resp, err = http.Get("http://" + p.g.AdminAddr() + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz after the first config: %v %v", resp, err)
	}
	resp.Body.Close()
}

// The control plane dies and comes back while clients load the proxy: no request
// fails, and after the restart the proxy reconnects and takes the version
// written while the control plane was away.
func TestControlPlaneLossUnderLoad(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopConfig("v1", ""))
	p := startProxy(t, cp, "gw-0", t.TempDir(), nil)
	waitServes(t, p, "v1")
	url := p.url()

	var ok, failed atomic.Int64
	var sawV2 atomic.Bool
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	deadline := time.Now().Add(20 * time.Second) // a bound if the test itself stalls
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				code, b, err := body(client, url)
				if err != nil || code != 200 || (b != "v1" && b != "v2") {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, strings.TrimSpace(b)+" "+errString(err))
					continue
				}
				ok.Add(1)
				if b == "v2" {
					sawV2.Store(true)
				}
			}
		}()
	}
	waitCount := func(n int64, what string) {
		t.Helper()
		target := ok.Load() + failed.Load() + n
		for ok.Load()+failed.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("load stalled %s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitCount(100, "before the control plane stopped")
	cp.Stop()
	waitCount(300, "while the control plane was down")
	cp.Apply(shopConfig("v2", "")) // the store lives on; the next control plane serves this
	cp.Restart()
	for !sawV2.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the proxy never served v2 after the control plane came back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitCount(100, "after the new version")
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed while the control plane was lost (first: %v)", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	statusOf(t, cp, "gw-0", func(s *cpv1.ProxyStatus) bool { return s.GetConnected() && s.GetRunningVersion() == s.GetSentVersion() })
	t.Logf("%d requests, none failed, across a control-plane stop and restart", ok.Load())
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// The bootstrap token goes out as bearer metadata (the control plane admits the
// proxy by it) and appears in no log line, even when the control plane refuses it.
func TestTokenIsNeverLogged(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopConfig("v1", ""))
	var buf testutil.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	token := cp.Token("ingress", "shop", "another-gw") // bound to another identity: refused
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		cpclient.Run(ctx, cpclient.Options{Addresses: []string{cp.Addr}, Token: token, Role: "ingress", Namespace: "shop", Name: "gw",
			Node: "n", Apply: func(*config.Set, []byte) error { return nil }, Logger: log,
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "PermissionDenied") {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("no refusal logged:\n%s", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if strings.Contains(buf.String(), token) {
		t.Errorf("the token appears in the log:\n%s", buf.String())
	}
	log.Info("options", "opts", cpclient.Options{Token: token})
	if strings.Contains(buf.String(), token) {
		t.Error("logging Options shows the token")
	}
}
