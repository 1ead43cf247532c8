// Package pushtest runs a real control plane for tests of config push: an embedded
// etcd store, the resource index, and a push server behind a gRPC server on a
// loopback port, with proxy bootstrap tokens checked from "authorization: Bearer"
// metadata as the daemon's interceptor does. The push server can be stopped and
// restarted on the same address while the store keeps running.
//
// It is not for production code.
package pushtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/push"
	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/gateway/config"
)

// Options adjust a test control plane. The zero value is fine.
type Options struct {
	// Logger receives the push server's logs. Nil: discarded.
	Logger *slog.Logger
	// StatusTTL and HelloTimeout are passed to the push server. Zero: its defaults.
	StatusTTL    time.Duration
	HelloTimeout time.Duration
	// Endpoints and EndpointsChanged stand in for the service registry.
	Endpoints        push.EndpointLookup
	EndpointsChanged <-chan struct{}
}

// ControlPlane is a running test control plane.
type ControlPlane struct {
	Store store.Store
	Index *resources.Index
	// Addr is the gRPC address, stable across Stop and Restart.
	Addr string

	t    testing.TB
	opts Options

	mu       sync.Mutex
	tokens   map[string]auth.Principal
	push     *push.Server
	grpc     *grpc.Server
	registry *prometheus.Registry
	served   chan struct{} // closed when the gRPC server's Serve returns
}

// Start runs a control plane until the test ends.
func Start(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ixCtx, stopIndex := context.WithCancel(context.Background())
	cp := &ControlPlane{
		Store:  st,
		Index:  resources.NewIndex(ixCtx, st, opts.Logger),
		t:      t,
		opts:   opts,
		tokens: map[string]auth.Principal{},
	}
	t.Cleanup(func() {
		cp.Stop()
		stopIndex()
		st.Close()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp.Addr = ln.Addr().String()
	cp.serve(ln)
	return cp
}

func (cp *ControlPlane) serve(ln net.Listener) {
	cp.t.Helper()
	reg := prometheus.NewRegistry()
	ps, err := push.NewServer(push.Options{
		Index: cp.Index, Store: cp.Store, Logger: cp.opts.Logger, Registerer: reg,
		Authorize: cp.authorize, StatusTTL: cp.opts.StatusTTL, HelloTimeout: cp.opts.HelloTimeout,
		Endpoints: cp.opts.Endpoints, EndpointsChanged: cp.opts.EndpointsChanged,
	})
	if err != nil {
		ln.Close()
		cp.t.Fatal(err)
	}
	gs := grpc.NewServer(push.ServerOptions()...)
	cpv1.RegisterConfigPushServer(gs, ps)
	served := make(chan struct{})
	go func() {
		defer close(served)
		gs.Serve(ln)
	}()
	cp.mu.Lock()
	cp.push, cp.grpc, cp.registry, cp.served = ps, gs, reg, served
	cp.mu.Unlock()
}

// Push is the running push server (nil while stopped).
func (cp *ControlPlane) Push() *push.Server {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.push
}

// Registry holds the running push server's metrics.
func (cp *ControlPlane) Registry() *prometheus.Registry {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.registry
}

// Stop closes the push server and its gRPC server, as a control plane that dies
// would; the store and the index keep running. Stopping twice is a no-op.
func (cp *ControlPlane) Stop() {
	cp.mu.Lock()
	ps, gs, served := cp.push, cp.grpc, cp.served
	cp.push, cp.grpc = nil, nil
	cp.mu.Unlock()
	if ps == nil {
		return
	}
	ps.Close()
	gs.Stop()
	<-served
}

// Restart starts a new push server on the same address.
func (cp *ControlPlane) Restart() {
	cp.t.Helper()
	var ln net.Listener
	var err error
	// The old socket is closed by Stop; the port is free but a few retries cover a
	// kernel that is slow to release it.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", cp.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		cp.t.Fatalf("restarting the control plane on %s: %v", cp.Addr, err)
	}
	cp.serve(ln)
}

// Token returns a new bootstrap token bound to one proxy identity (name "*": any
// name in the namespace).
func (cp *ControlPlane) Token(role, namespace, name string) string {
	var b [16]byte
	rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	cp.mu.Lock()
	cp.tokens[tok] = auth.Principal{Kind: auth.KindProxy, Name: "test-" + role + "-" + namespace + "-" + name,
		ProxyRole: role, ProxyNamespace: namespace, ProxyName: name}
	cp.mu.Unlock()
	return tok
}

func (cp *ControlPlane) authorize(ctx context.Context) (auth.Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok {
			cp.mu.Lock()
			p, known := cp.tokens[tok]
			cp.mu.Unlock()
			if known {
				return p, nil
			}
		}
	}
	return auth.Principal{}, status.Error(codes.Unauthenticated, "no valid bootstrap token")
}

// Apply writes every resource of docs (YAML documents) to the store as the admin
// API would, without validating references between them, and waits until the
// index has seen the writes. It returns the store revision of the last write.
func (cp *ControlPlane) Apply(docs string) int64 {
	cp.t.Helper()
	set := &config.Set{}
	if err := set.Add("pushtest", []byte(docs)); err != nil {
		cp.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rev int64
	for _, d := range set.Documents() {
		b, err := resources.Canonical(d)
		if err != nil {
			cp.t.Fatal(err)
		}
		if rev, err = cp.Store.Put(ctx, resources.Key(d.Kind, d.Metadata.Namespace, d.Metadata.Name), b, store.Any); err != nil {
			cp.t.Fatal(err)
		}
	}
	if _, err := cp.Index.WaitRevision(ctx, rev); err != nil {
		cp.t.Fatal(err)
	}
	return rev
}

// Delete removes one resource and waits until the index has seen it.
func (cp *ControlPlane) Delete(kind, namespace, name string) {
	cp.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := resources.Key(kind, namespace, name)
	if err := cp.Store.Delete(ctx, key, store.Any); err != nil {
		cp.t.Fatal(err)
	}
	for {
		v, changed := cp.Index.View()
		if _, ok := v.ByKey[key]; !ok {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			cp.t.Fatalf("the index never saw %s deleted", key)
		}
	}
}
