package certstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
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
	"github.com/portcullis/portcullis/controlplane/certstore"
	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/controlplane/store/certstorage"
)

// memberEndpoints are the client URLs of the one embedded etcd member the
// package's tests share; each test has a store prefix of its own.
var memberEndpoints []string

func TestMain(m *testing.M) { os.Exit(runWithMember(m)) }

func runWithMember(m *testing.M) int {
	dir, err := os.MkdirTemp("", "certstore-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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

var runs atomic.Int64

// Tokens of the test server's proxies.
const (
	shopIngress  = "shop-ingress-token"
	otherIngress = "other-ingress-token"
)

// env is a Service behind a real gRPC server on loopback with the control
// plane's authentication interceptors, on a store prefix of its own.
type env struct {
	svc    *certstore.Service
	st     store.Store
	conn   *grpc.ClientConn
	client cpv1.CertStorageClient
	reg    *prometheus.Registry
}

func start(t *testing.T, opts certstore.Options) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := store.OpenCluster(ctx, store.ClusterConfig{Endpoints: memberEndpoints,
		Prefix: "/certstore-test-" + strconv.FormatInt(runs.Add(1), 10) + "/", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	authn, err := auth.NewAuthenticator(auth.Options{ProxyTokens: []auth.ProxyToken{
		{Name: "shop", SHA256: auth.TokenDigest(shopIngress), Role: "ingress", Namespace: "shop", ProxyName: "*"},
		{Name: "other", SHA256: auth.TokenDigest(otherIngress), Role: "ingress", Namespace: "other", ProxyName: "*"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, reg: prometheus.NewRegistry()}
	opts.Store, opts.Registerer = st, e.reg
	if e.svc, err = certstore.New(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.svc.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(authn.UnaryInterceptor()), grpc.StreamInterceptor(authn.StreamInterceptor()))
	cpv1.RegisterCertStorageServer(srv, e.svc)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	if e.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.conn.Close() })
	e.client = cpv1.NewCertStorageClient(e.conn)
	return e
}

// as is a context whose calls carry token, ending with the test or after 10 s.
func as(t *testing.T, token string) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// lock opens a Lock stream and waits until it holds name.
func (e *env) lock(t *testing.T, ctx context.Context, name string) cpv1.CertStorage_LockClient {
	t.Helper()
	stream, err := e.client.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(acquire(name)); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || !resp.GetHeld() {
		t.Fatalf("lock %q: %v, %v", name, resp, err)
	}
	return stream
}

func acquire(name string) *cpv1.CertLockRequest {
	return &cpv1.CertLockRequest{Step: &cpv1.CertLockRequest_Acquire{Acquire: name}}
}

// storeLockFree reports whether the store lock of name in namespace ns can be
// taken within d, through certstorage as the control plane's own code would;
// it releases it at once.
func storeLockFree(t *testing.T, st store.Store, ns, name string, d time.Duration) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	cs := certstorage.New(st, certstore.KeyPrefix+ns)
	if err := cs.Lock(ctx, name); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("store lock %q: %v", name, err)
		}
		return false
	}
	if err := cs.Unlock(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return true
}

// TestKeyLayout: a proxy's keys live under acme/<its namespace>/ in the store,
// in certstorage's format, so the control plane's own certstorage reads them.
func TestKeyLayout(t *testing.T) {
	e := start(t, certstore.Options{})
	const key = "certificates/ca/shop.example.com/shop.example.com.crt"
	if _, err := e.client.Store(as(t, shopIngress), &cpv1.CertStoreRequest{Key: "/" + key + "/", Value: []byte("chain")}); err != nil {
		t.Fatal(err)
	}
	kvs, _, err := e.st.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 1 || kvs[0].Key != "acme/shop/"+key {
		t.Fatalf("store holds %d keys (first %q), want exactly acme/shop/%s", len(kvs), firstKey(kvs), key)
	}
	v, err := certstorage.New(e.st, "acme/shop").Load(t.Context(), key)
	if err != nil || string(v) != "chain" {
		t.Fatalf("certstorage on the control plane: %q, %v", v, err)
	}
	info, err := e.client.Stat(as(t, shopIngress), &cpv1.CertStatRequest{Key: "certificates"})
	if err != nil || info.GetIsTerminal() || info.GetModifiedUnixNano() != 0 {
		t.Fatalf("Stat of a directory: %v, %v; want a directory without a write time", info, err)
	}
}

func firstKey(kvs []store.KV) string {
	if len(kvs) == 0 {
		return ""
	}
	return kvs[0].Key
}

// TestReleaseAndHalfClose: a release message and a half-close both release the
// lock and end the stream with OK.
func TestReleaseAndHalfClose(t *testing.T) {
	e := start(t, certstore.Options{})
	for _, how := range []string{"release", "half-close"} {
		t.Run(how, func(t *testing.T) {
			stream := e.lock(t, as(t, shopIngress), "issue_cert_a")
			if storeLockFree(t, e.st, "shop", "issue_cert_a", 200*time.Millisecond) {
				t.Fatal("the store lock is free while the stream holds it")
			}
			if how == "release" {
				if err := stream.Send(&cpv1.CertLockRequest{Step: &cpv1.CertLockRequest_Release{Release: &cpv1.CertLockRelease{}}}); err != nil {
					t.Fatal(err)
				}
			} else if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("after %s: %v, want the stream to end with OK", how, err)
			}
			if !storeLockFree(t, e.st, "shop", "issue_cert_a", 5*time.Second) {
				t.Fatalf("the lock is still held after %s", how)
			}
		})
	}
}

// TestCloseReleasesLocks: Close ends the held locks' streams with Unavailable,
// releases their locks and refuses new ones.
func TestCloseReleasesLocks(t *testing.T) {
	e := start(t, certstore.Options{})
	stream := e.lock(t, as(t, shopIngress), "issue_cert_b")
	if got := heldLocks(t, e.reg, "shop"); got != 1 {
		t.Fatalf("portcullis_controlplane_cert_locks_held{namespace=shop} = %v while held, want 1", got)
	}
	closed := make(chan struct{})
	go func() { e.svc.Close(); close(closed) }()
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("a held lock's stream at Close: %v, want Unavailable", err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s")
	}
	if !storeLockFree(t, e.st, "shop", "issue_cert_b", 5*time.Second) {
		t.Fatal("the lock is still held after Close")
	}
	if got := heldLocks(t, e.reg, "shop"); got != 0 {
		t.Fatalf("portcullis_controlplane_cert_locks_held{namespace=shop} = %v after Close, want 0", got)
	}
	s, err := e.client.Lock(as(t, shopIngress))
	if err == nil {
		_ = s.Send(acquire("x"))
		_, err = s.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Lock after Close: %v, want Unavailable", err)
	}
}

// TestLockLimitPerNamespace: one namespace's streams are bounded, and the bound
// is that namespace's alone.
func TestLockLimitPerNamespace(t *testing.T) {
	e := start(t, certstore.Options{MaxLocksPerNamespace: 2})
	ctx, cancel := context.WithCancel(as(t, shopIngress))
	e.lock(t, ctx, "one")
	e.lock(t, ctx, "two")
	s, err := e.client.Lock(as(t, shopIngress))
	if err == nil {
		_ = s.Send(acquire("three"))
		_, err = s.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), `namespace "shop" already has 2 locks`) {
		t.Fatalf("a third lock in shop: %v, want ResourceExhausted naming the namespace", err)
	}
	e.lock(t, as(t, otherIngress), "three") // another namespace is not affected
	cancel()                                // shop's two streams end
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := e.client.Lock(as(t, shopIngress))
		if err == nil {
			if err = s.Send(acquire("three")); err == nil {
				_, err = s.Recv()
			}
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shop's streams ended 5s ago and a new lock is still refused: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLockStreamProtocol: a stream must start with acquire, promptly, with a
// usable name.
func TestLockStreamProtocol(t *testing.T) {
	e := start(t, certstore.Options{AcquireTimeout: 200 * time.Millisecond})
	cases := []struct {
		name string
		send *cpv1.CertLockRequest
		want codes.Code
		msg  string
	}{
		{"silent", nil, codes.DeadlineExceeded, "no acquire within 200ms"},
		{"release first", &cpv1.CertLockRequest{Step: &cpv1.CertLockRequest_Release{Release: &cpv1.CertLockRelease{}}}, codes.InvalidArgument, "send acquire first"},
		{"empty name", acquire(""), codes.InvalidArgument, "lock name is empty"},
		{"control character", acquire("a\nb"), codes.InvalidArgument, "not printable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := e.client.Lock(as(t, shopIngress))
			if err == nil && c.send != nil {
				err = s.Send(c.send)
			}
			if err == nil {
				_, err = s.Recv()
			}
			if status.Code(err) != c.want || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("%v, want %s with %q", err, c.want, c.msg)
			}
		})
	}
}

// heldLocks reads portcullis_controlplane_cert_locks_held{namespace=ns}.
func heldLocks(t *testing.T, reg *prometheus.Registry, ns string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "portcullis_controlplane_cert_locks_held" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "namespace" && l.GetValue() == ns {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}
