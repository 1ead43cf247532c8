package cpstorage_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/server/servertest"
	"github.com/portcullis/portcullis/gateway/certs/acmetest"
	"github.com/portcullis/portcullis/gateway/certs/cpstorage"
)

// TestReplicasShareControlPlane runs the replicas scenario of gateway/certs over
// two Storages that are gRPC clients of one real control plane, with the same
// ingress token: the two Managers start together against Pebble, and the
// control plane's locks make that one order and one certificate, served by both.
func TestReplicasShareControlPlane(t *testing.T) {
	cp := startControlPlane(t)
	acmetest.ReplicasShareStorage(t, func(t *testing.T) certmagic.Storage {
		return cp.storage(t, servertest.Proxy, acmetest.Logger(t))
	})
}

// TestMatchesFileStorage writes the same keys through the control plane and into
// certmagic's FileStorage, then asks both the same questions.
func TestMatchesFileStorage(t *testing.T) {
	cp := startControlPlane(t)
	ctx := testContext(t, 30*time.Second)
	ours := cp.storage(t, servertest.Proxy, nil)
	reference := &certmagic.FileStorage{Path: t.TempDir()}
	keys := []string{
		"acme/ca/users/me@example.com/me.json",
		"acme/ca/users/me@example.com/me.key",
		"certificates/ca/shop.example.com/shop.example.com.crt",
		"certificates/ca/shop.example.com/shop.example.com.json",
		"certificates/ca/wildcard_.example.org/wildcard_.example.org.crt",
		"ocsp/shop.example.com-0123",
	}
	before := time.Now().Add(-time.Second)
	for _, k := range keys {
		for _, s := range []certmagic.Storage{ours, reference} {
			if err := s.Store(ctx, k, []byte("value of "+k)); err != nil {
				t.Fatalf("%s: store %s: %v", s, k, err)
			}
		}
	}
	for _, dir := range []string{"", "acme", "certificates/ca", "certificates/ca/shop.example.com", "missing", "ocsp/shop.example.com-0123"} {
		for _, recursive := range []bool{false, true} {
			want, wantErr := reference.List(ctx, dir, recursive)
			got, err := ours.List(ctx, dir, recursive)
			if !slices.Equal(got, want) || errors.Is(err, fs.ErrNotExist) != errors.Is(wantErr, fs.ErrNotExist) {
				t.Errorf("List(%q, %v) = %q, %v; FileStorage: %q, %v", dir, recursive, got, err, want, wantErr)
			}
		}
	}
	for _, k := range append(keys, "acme", "certificates/ca/shop.example.com", "missing", "acme/c") {
		want, wantErr := reference.Stat(ctx, k)
		got, err := ours.Stat(ctx, k)
		// A directory's size is the file system's business; a file's is its length.
		if errors.Is(err, fs.ErrNotExist) != errors.Is(wantErr, fs.ErrNotExist) || got.IsTerminal != want.IsTerminal ||
			(want.IsTerminal && got.Size != want.Size) {
			t.Errorf("Stat(%q) = %+v, %v; FileStorage: %+v, %v", k, got, err, want, wantErr)
		}
		if got.IsTerminal && (got.Key != k || got.Modified.Before(before) || got.Modified.After(time.Now())) {
			t.Errorf("Stat(%q) = %+v: want the key and a write time of this test", k, got)
		}
		if ours.Exists(ctx, k) != reference.Exists(ctx, k) {
			t.Errorf("Exists(%q) = %v, FileStorage says %v", k, !reference.Exists(ctx, k), reference.Exists(ctx, k))
		}
	}
	if v, err := ours.Load(ctx, keys[1]); err != nil || string(v) != "value of "+keys[1] {
		t.Fatalf("Load = %q, %v", v, err)
	}
	if _, err := ours.Load(ctx, "missing/key"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	if err := ours.Delete(ctx, "certificates/ca"); err != nil {
		t.Fatal(err)
	}
	if ours.Exists(ctx, keys[2]) || !ours.Exists(ctx, keys[0]) {
		t.Fatal("Delete of a directory: what is below it must go, and nothing else")
	}
	if err := ours.Delete(ctx, "certificates/ca"); err != nil {
		t.Fatalf("Delete of a missing key: %v, want nil", err)
	}
}

// TestRefusedInput: keys and values the control plane does not keep, refused
// with InvalidArgument naming what is wrong.
func TestRefusedInput(t *testing.T) {
	cp := startControlPlane(t)
	ctx := testContext(t, 30*time.Second)
	s := cp.storage(t, servertest.Proxy, nil)
	cases := []struct {
		name, key string
		value     []byte
		want      string
	}{
		{"empty key", "/", nil, "key: empty"},
		{"dot-dot element", "certificates/../../other/x", nil, `path elements`},
		{"empty element", "a//b", nil, `path elements`},
		{"control character", "a/b\x00c", nil, "not printable"},
		{"too long", strings.Repeat("k", 1025), nil, "at most 1024"},
		{"value too large", "big", make([]byte, 1<<20+1), "at most 1048576"},
	}
	for _, c := range cases {
		err := s.Store(ctx, c.key, c.value)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Store: %v; want InvalidArgument with %q", c.name, err, c.want)
		}
	}
	if err := s.Lock(ctx, ""); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Lock with an empty name: %v, want InvalidArgument", err)
	}
}

// TestNamespaceIsolation: two ingress proxies of different namespaces use the
// same keys and lock names and see nothing of each other, while two replicas of
// one namespace share both.
func TestNamespaceIsolation(t *testing.T) {
	cp := startControlPlane(t)
	ctx := testContext(t, 30*time.Second)
	shop := cp.storage(t, servertest.Proxy, nil)
	shopReplica := cp.storage(t, servertest.Proxy, nil)
	other := cp.storage(t, otherIngress, nil)
	const key = "certificates/ca/shop.example.com/shop.example.com.key"

	if err := shop.Store(ctx, key, []byte("shop's private key")); err != nil {
		t.Fatal(err)
	}
	if v, err := shopReplica.Load(ctx, key); err != nil || string(v) != "shop's private key" {
		t.Fatalf("a replica of the same namespace: Load = %q, %v; want shop's value", v, err)
	}
	if v, err := other.Load(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("namespace other: Load of shop's key = %q, %v; want fs.ErrNotExist", v, err)
	}
	if other.Exists(ctx, key) || other.Exists(ctx, "certificates") {
		t.Fatal("namespace other sees shop's keys")
	}
	if keys, err := other.List(ctx, "", true); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("namespace other: List of the root = %q, %v; want nothing", keys, err)
	}
	// Writing and deleting the same key in other leaves shop's untouched.
	if err := other.Store(ctx, key, []byte("other's key")); err != nil {
		t.Fatal(err)
	}
	if err := other.Delete(ctx, "certificates"); err != nil {
		t.Fatal(err)
	}
	if v, err := shop.Load(ctx, key); err != nil || string(v) != "shop's private key" {
		t.Fatalf("after other's write and delete: shop's Load = %q, %v", v, err)
	}

	// Locks: other takes shop's lock name while shop holds it; shop's replica
	// cannot.
	const lock = "issue_cert_shop.example.com"
	if err := shop.Lock(ctx, lock); err != nil {
		t.Fatal(err)
	}
	if err := other.Lock(testContext(t, 10*time.Second), lock); err != nil {
		t.Fatalf("namespace other waited for shop's lock: %v", err)
	}
	if err := shopReplica.Lock(testContext(t, 300*time.Millisecond), lock); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shop's replica took the lock shop holds: %v", err)
	}
	for _, s := range []*cpstorage.Storage{shop, other} {
		if err := s.Unlock(ctx, lock); err != nil {
			t.Fatal(err)
		}
	}
	if err := shopReplica.Lock(testContext(t, 10*time.Second), lock); err != nil {
		t.Fatalf("shop's replica after shop's Unlock: %v", err)
	}
	if err := shopReplica.Unlock(ctx, lock); err != nil {
		t.Fatal(err)
	}
}

// TestLockReleasedWhenConnectionDies: a proxy holds a lock through a network
// path that is then cut (no release is ever sent). The control plane sees the
// stream end and releases the lock, so another replica gets it within a bounded
// time, and the first proxy is told that its lock is lost.
func TestLockReleasedWhenConnectionDies(t *testing.T) {
	cp := startControlPlane(t)
	link := startForwarder(t, cp.env.GRPCAddr)
	var logs logBuffer
	// The certificate is for 127.0.0.1 and localhost; the forwarder's address is
	// 127.0.0.1 too.
	doomed := cp.storage(t, servertest.Proxy, logs.logger(), link.Addr())
	survivor := cp.storage(t, servertest.Proxy, nil)
	const lock = "issue_cert_shop.example.com"

	if err := doomed.Lock(testContext(t, 10*time.Second), lock); err != nil {
		t.Fatal(err)
	}
	if err := survivor.Lock(testContext(t, 300*time.Millisecond), lock); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the lock was not exclusive: %v", err)
	}
	link.kill()
	const bound = 5 * time.Second
	cut := time.Now()
	if err := survivor.Lock(testContext(t, bound), lock); err != nil {
		t.Fatalf("the lock of a proxy whose connection died was not released within %s: %v", bound, err)
	}
	t.Logf("lock taken over %s after the connection was cut", time.Since(cut).Round(time.Millisecond))
	deadline := time.Now().Add(bound)
	for !logs.contains("ACME lock lost") {
		if time.Now().After(deadline) {
			t.Fatal("the proxy whose connection died was not told its lock is lost")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := doomed.Unlock(context.Background(), lock); err != nil {
		t.Fatalf("Unlock of a lost lock: %v, want nil (it is released already)", err)
	}
	if err := survivor.Unlock(context.Background(), lock); err != nil {
		t.Fatal(err)
	}
}

// TestLockWaitEndsWithContext: a Lock that gives up waiting leaves nothing
// queued at the control plane: the next caller gets the lock as soon as the
// holder releases it.
func TestLockWaitEndsWithContext(t *testing.T) {
	cp := startControlPlane(t)
	a := cp.storage(t, servertest.Proxy, nil)
	b := cp.storage(t, servertest.Proxy, nil)
	c := cp.storage(t, servertest.Proxy, nil)
	const lock = "storage_clean"
	if err := a.Lock(testContext(t, 10*time.Second), lock); err != nil {
		t.Fatal(err)
	}
	if err := b.Lock(testContext(t, 200*time.Millisecond), lock); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held: %v, want the context's deadline", err)
	}
	if err := b.Unlock(context.Background(), lock); err == nil {
		t.Fatal("Unlock of a lock never taken succeeded")
	}
	if err := a.Unlock(context.Background(), lock); err != nil {
		t.Fatal(err)
	}
	if err := c.Lock(testContext(t, 2*time.Second), lock); err != nil {
		t.Fatalf("after the release, with an abandoned waiter before: %v", err)
	}
	if err := c.Unlock(context.Background(), lock); err != nil {
		t.Fatal(err)
	}
}

// TestRefusedCallers: only ingress proxies may use the storage. Callers without
// a credential, with an unknown token, with an operator's token or client
// certificate, or with an egress proxy's token are refused, for plain calls and
// for locks alike; no error repeats the token sent.
func TestRefusedCallers(t *testing.T) {
	cp := startControlPlane(t)
	ctx := testContext(t, 30*time.Second)
	const unknownToken = "not-a-token-this-control-plane-knows"
	cases := []struct {
		name   string
		client cpv1.CertStorageClient
		want   codes.Code
	}{
		{"no credential", cpv1.NewCertStorageClient(cp.env.Conn(t, "", "", "")), codes.Unauthenticated},
		{"unknown token", cpv1.NewCertStorageClient(cp.env.Conn(t, unknownToken, "", "")), codes.Unauthenticated},
		{"operator token", cpv1.NewCertStorageClient(cp.env.Conn(t, cp.tokens[servertest.Admin], "", "")), codes.PermissionDenied},
		{"operator certificate", cpv1.NewCertStorageClient(cp.env.Conn(t, "", cp.env.CertFile, cp.env.KeyFile)), codes.PermissionDenied},
		{"egress proxy", cpv1.NewCertStorageClient(cp.env.Conn(t, cp.tokens[shopEgress], "", "")), codes.PermissionDenied},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.client.Load(ctx, &cpv1.CertLoadRequest{Key: "k"}); status.Code(err) != c.want {
				t.Errorf("Load: %v, want %s", err, c.want)
			}
			if _, err := c.client.Store(ctx, &cpv1.CertStoreRequest{Key: "k", Value: []byte("v")}); status.Code(err) != c.want {
				t.Errorf("Store: %v, want %s", err, c.want)
			}
			stream, err := c.client.Lock(ctx)
			if err == nil {
				_ = stream.Send(&cpv1.CertLockRequest{Step: &cpv1.CertLockRequest_Acquire{Acquire: "l"}})
				_, err = stream.Recv()
			}
			if status.Code(err) != c.want {
				t.Errorf("Lock: %v, want %s", err, c.want)
			}
		})
	}
	// Through the Storage: the status survives, the token is not in the error.
	for who, want := range map[string]codes.Code{unknownToken: codes.Unauthenticated, shopEgress: codes.PermissionDenied} {
		s := cp.storage(t, who, nil)
		err := s.Store(ctx, "k", []byte("v"))
		if status.Code(err) != want || strings.Contains(err.Error(), unknownToken) || strings.Contains(err.Error(), cp.tokens[shopEgress]) {
			t.Errorf("Storage with %s: Store: %v, want %s without the token", who, err, want)
		}
		if err := s.Lock(ctx, "l"); status.Code(err) != want {
			t.Errorf("Storage with %s: Lock: %v, want %s", who, err, want)
		}
	}
	// Nothing was written by the refused calls.
	if keys, err := cp.storage(t, servertest.Proxy, nil).List(ctx, "", true); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("shop's key space after refused calls: %q, %v; want empty", keys, err)
	}
}

// TestFailoverToNextAddress: with the first address dead, calls go to the next.
func TestFailoverToNextAddress(t *testing.T) {
	cp := startControlPlane(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	ctx := testContext(t, 30*time.Second)
	s := cp.storage(t, servertest.Proxy, nil, dead, cp.env.GRPCAddr)
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("Store with the first address dead: %v", err)
	}
	if v, err := s.Load(ctx, "k"); err != nil || !bytes.Equal(v, []byte("v")) {
		t.Fatalf("Load = %q, %v", v, err)
	}
}

// TestNewChecksOptions: the options a proxy cannot run with are refused before
// anything is dialled.
func TestNewChecksOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		opts cpstorage.Options
		want string
	}{
		{"no address", cpstorage.Options{Token: "t"}, "Options.Addresses: at least one"},
		{"URL", cpstorage.Options{Addresses: []string{"https://cp:9443"}, Token: "t"}, `Addresses[0]: "https://cp:9443" is not host:port`},
		{"no port", cpstorage.Options{Addresses: []string{"cp:9443", "cp2"}, Token: "t"}, `Addresses[1]: "cp2" is not host:port`},
		{"no token", cpstorage.Options{Addresses: []string{"cp:9443"}}, "Options.Token is required"},
	} {
		if _, err := cpstorage.New(c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}
