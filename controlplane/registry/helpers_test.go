package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/registry"
	"github.com/portcullis/portcullis/controlplane/store"
)

// memberEndpoints are the client URLs of the one embedded etcd member every test
// of this package shares; each test gets its own key prefix on it.
var memberEndpoints []string

func TestMain(m *testing.M) {
	os.Exit(runWithMember(m))
}

func runWithMember(m *testing.M) int {
	dir, err := os.MkdirTemp("", "registry-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	member, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the embedded store:", err)
		return 1
	}
	defer member.Close()
	memberEndpoints = member.Endpoints()
	return m.Run()
}

// newStore opens a client of the shared member under a key prefix of the test's
// own, as a separate control plane would be.
func newStore(t *testing.T) store.Store {
	t.Helper()
	return openStore(t, uniquePrefix(t))
}

var runs atomic.Int64

// uniquePrefix is a key prefix no other test, nor another run of this one
// (-count), uses.
func uniquePrefix(t *testing.T) string {
	return "/" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name()) + "-" + strconv.FormatInt(runs.Add(1), 10) + "/"
}

// openStore opens a client of the shared member under prefix; two clients of one
// prefix are two replicas of one control plane.
func openStore(t *testing.T, prefix string) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := store.OpenCluster(ctx, store.ClusterConfig{Endpoints: memberEndpoints, Prefix: prefix, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// newRegistry starts a registry on st (loopback allowed unless opts says
// otherwise through a registry of its own) and waits until it is ready.
func newRegistry(t *testing.T, st store.Store, opts registry.Options) *registry.Registry {
	t.Helper()
	opts.Store = st
	if opts.Logger == nil && testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	r, err := registry.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	select {
	case <-r.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the registry did not list the store within 10s")
	}
	return r
}

// principalHeader carries the caller's principal from the test client to the
// server's stand-in authentication (the real one is the API server's).
const principalHeader = "x-test-principal"

// serve runs reg behind a real gRPC server on loopback and returns a client.
func serve(t *testing.T, reg cpv1.RegistryServer) cpv1.RegistryClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	authenticate := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get(principalHeader); len(v) == 1 {
			var p auth.Principal
			if err := json.Unmarshal([]byte(v[0]), &p); err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			}
			ctx = auth.WithPrincipal(ctx, p)
		}
		return next(ctx, req)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(authenticate))
	cpv1.RegisterRegistryServer(srv, reg)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return cpv1.NewRegistryClient(conn)
}

// as returns a context whose calls carry p (nil: no credential at all).
func as(t *testing.T, p *auth.Principal) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	if p == nil {
		return ctx
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(ctx, principalHeader, string(b))
}

func sidecar(namespace, name string) *auth.Principal {
	return &auth.Principal{Kind: auth.KindProxy, Name: namespace + "-" + name, ProxyRole: "sidecar", ProxyNamespace: namespace, ProxyName: name}
}

var operator = &auth.Principal{Kind: auth.KindUser, Name: "alice"}

// allow is an Authorize that permits exactly the listed "verb ns/service"
// grants and records every question.
type allow struct {
	grants map[string]bool
	asked  atomic.Pointer[[]string]
}

func newAllow(grants ...string) *allow {
	a := &allow{grants: map[string]bool{}}
	for _, g := range grants {
		a.grants[g] = true
	}
	a.asked.Store(&[]string{})
	return a
}

func (a *allow) Authorize(_ context.Context, verb, namespace, service string) error {
	q := verb + " " + namespace + "/" + service
	for {
		old := a.asked.Load()
		next := append(slices.Clone(*old), q)
		if a.asked.CompareAndSwap(old, &next) {
			break
		}
	}
	if !a.grants[q] {
		return fmt.Errorf("no role grants %q", q)
	}
	return nil
}

// app is a service instance on loopback whose health endpoint answers with a
// status the test sets, counting the probes it answers.
type app struct {
	srv    *httptest.Server
	status atomic.Int32
	probes atomic.Int64
}

func newApp(t *testing.T) *app {
	t.Helper()
	a := &app{}
	a.status.Store(http.StatusOK)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			a.probes.Add(1)
			w.WriteHeader(int(a.status.Load()))
			return
		}
		w.Write([]byte("app"))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) addr() string { return a.srv.Listener.Addr().String() }

// waitEndpoints waits, on Changed, until reg's healthy endpoints of ns/service
// are exactly want (addresses), or fails after timeout. It returns how long it
// took.
func waitEndpoints(t *testing.T, reg *registry.Registry, ns, service string, timeout time.Duration, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		changed := reg.Changed()
		eps, _ := reg.Endpoints(ns, service)
		got := make([]string, 0, len(eps))
		for _, e := range eps {
			got = append(got, e.Address)
		}
		if slices.Equal(got, want) {
			return time.Since(start)
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%s/%s: healthy endpoints are %q after %v, want %q", ns, service, got, timeout, want)
		}
	}
}

// eventually polls cond every 10ms until it holds, or fails after timeout. For
// state that no channel announces.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantCode(t *testing.T, err error, want codes.Code, what string) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: code %v (%v), want %v", what, got, err, want)
	}
}

// metricValue reads one sample from g; absent samples read as 0.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
