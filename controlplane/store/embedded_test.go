package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/controlplane/store/storetest"
)

// quietLogger drops etcd's warnings, which members that are stopped on purpose
// produce plenty of.
var quietLogger = slog.New(slog.DiscardHandler)

func openEmbedded(t *testing.T, dir string) *store.Etcd {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	s, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: dir, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// clientOf opens another Store on the backend of s, as a second process would.
func clientOf(t *testing.T, endpoints []string) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := store.OpenCluster(ctx, store.ClusterConfig{Endpoints: endpoints, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEmbeddedConformance runs the suite against one embedded member; each Store
// the suite opens is a separate client of it (a separate session and lease).
func TestEmbeddedConformance(t *testing.T) {
	t.Parallel()
	member := openEmbedded(t, t.TempDir())
	endpoints := member.Endpoints()
	if len(endpoints) != 1 || !strings.HasPrefix(endpoints[0], "http://127.0.0.1:") {
		t.Fatalf("Endpoints() = %q; want the member's loopback listener", endpoints)
	}
	storetest.Run(t, func(t *testing.T) store.Store { return clientOf(t, endpoints) })
}

// TestEmbeddedReopenKeepsData writes through the embedded member's own Store,
// closes it (stopping the member), reopens the same directory and finds the data,
// the revisions and a working watch.
func TestEmbeddedReopenKeepsData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	first := openEmbedded(t, dir)
	rev, err := first.Put(ctx, "routes/a", []byte("one"), store.MustNotExist)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Put(ctx, "routes/b", []byte("two"), store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := first.Get(ctx, "routes/a"); err == nil {
		t.Fatal("Get on a closed store succeeded")
	}
	if resp, ok := <-first.Watch(ctx, "routes/", 0); !ok || resp.Err == nil {
		t.Fatalf("Watch on a closed store: first response %+v (open %v); want an error", resp, ok)
	}
	if _, err := first.Lock(ctx, "after-close"); err == nil {
		t.Fatal("Lock on a closed store succeeded")
	}

	second := openEmbedded(t, dir)
	kvs, listRev, err := second.List(ctx, "routes/")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 2 || string(kvs[0].Value) != "one" || string(kvs[1].Value) != "two" || kvs[0].ModRevision != rev {
		t.Fatalf("after reopening: List = %+v; want routes/a=one (at %d), routes/b=two", kvs, rev)
	}
	// The revision survived too: a write conditional on it still applies.
	newRev, err := second.Put(ctx, "routes/a", []byte("one again"), rev)
	if err != nil {
		t.Fatalf("conditional Put on the revision read before the restart: %v", err)
	}
	watch := second.Watch(ctx, "routes/", listRev)
	select {
	case resp := <-watch:
		if resp.Err != nil || resp.Revision != newRev || len(resp.Events) != 1 || string(resp.Events[0].KV.Value) != "one again" {
			t.Fatalf("watch after reopening = %+v; want the put at %d", resp, newRev)
		}
	case <-ctx.Done():
		t.Fatal("no watch event after reopening")
	}
}

func TestOpenEmbeddedRejectsBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		cfg     store.EmbeddedConfig
		wantErr string
	}{
		{"no dir", store.EmbeddedConfig{}, "EmbeddedConfig.Dir is required"},
		{"client on all interfaces", store.EmbeddedConfig{Dir: dir, ClientAddr: "0.0.0.0:2379"}, "EmbeddedConfig.ClientAddr \"0.0.0.0:2379\": must be a loopback"},
		{"client on a LAN address", store.EmbeddedConfig{Dir: dir, ClientAddr: "10.1.2.3:2379"}, "EmbeddedConfig.ClientAddr"},
		{"client by host name", store.EmbeddedConfig{Dir: dir, ClientAddr: "localhost:2379"}, "must be a loopback IP address"},
		{"peer without port", store.EmbeddedConfig{Dir: dir, PeerAddr: "127.0.0.1"}, "EmbeddedConfig.PeerAddr \"127.0.0.1\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := store.OpenEmbedded(t.Context(), tt.cfg)
			if err == nil {
				_ = s.Close()
				t.Fatal("OpenEmbedded succeeded; want an error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("a refused config wrote to the data dir: %v, %v", entries, err)
	}
}

func TestOpenClusterRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     store.ClusterConfig
		wantErr string
	}{
		{"no endpoints", store.ClusterConfig{}, "ClusterConfig.Endpoints: at least one"},
		{"blank endpoint", store.ClusterConfig{Endpoints: []string{"127.0.0.1:1", " "}}, "ClusterConfig.Endpoints[1]: empty"},
		{"user without password", store.ClusterConfig{Endpoints: []string{"127.0.0.1:1"}, Username: "root"}, "Username and ClusterConfig.Password"},
		{"prefix without trailing slash", store.ClusterConfig{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/mine"}, "ClusterConfig.Prefix \"/mine\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := store.OpenCluster(t.Context(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("OpenCluster error = %v; want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestOpenClusterUnreachable: nobody listening means an error within the dial
// timeout, not a hang.
func TestOpenClusterUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	start := time.Now()
	_, err = store.OpenCluster(t.Context(), store.ClusterConfig{Endpoints: []string{addr}, DialTimeout: time.Second, Logger: quietLogger})
	if err == nil {
		t.Fatal("OpenCluster of a closed port succeeded")
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not name the endpoint %s", err, addr)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("OpenCluster took %v with a 1s dial timeout", took)
	}
}

// TestPrefixIsolation: two control planes with different prefixes share one etcd
// without seeing each other, and the data sits under <prefix>data/ in etcd.
func TestPrefixIsolation(t *testing.T) {
	t.Parallel()
	member := openEmbedded(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	other, err := store.OpenCluster(ctx, store.ClusterConfig{Endpoints: member.Endpoints(), Prefix: "/other/", Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := member.Put(ctx, "k", []byte("default"), store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Put(ctx, "k", []byte("other"), store.MustNotExist); err != nil {
		t.Fatalf("the same key under another prefix: %v", err)
	}
	for s, want := range map[store.Store]string{member: "default", other: "other"} {
		kvs, _, err := s.List(ctx, "")
		if err != nil || len(kvs) != 1 || kvs[0].Key != "k" || string(kvs[0].Value) != want {
			t.Fatalf("List(\"\") = %+v, %v; want only k=%s", kvs, err, want)
		}
	}

	raw, err := clientv3.New(clientv3.Config{Endpoints: member.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for key, want := range map[string]string{store.DefaultPrefix + "data/k": "default", "/other/data/k": "other"} {
		resp, err := raw.Get(ctx, key)
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != want {
			t.Fatalf("raw etcd key %s = %v, %v; want %q", key, resp, err, want)
		}
	}
}

// TestSnapshot: a snapshot is a bbolt database holding what was written.
func TestSnapshot(t *testing.T) {
	t.Parallel()
	member := openEmbedded(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const keys = 20
	for i := range keys {
		if _, err := member.Put(ctx, "snap/"+string(rune('a'+i)), bytes.Repeat([]byte{'v'}, 100), store.Any); err != nil {
			t.Fatal(err)
		}
	}

	var buf bytes.Buffer
	n, err := member.Snapshot(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || n < 4096 {
		t.Fatalf("Snapshot reported %d bytes and wrote %d; want a database of at least one page", n, buf.Len())
	}
	// bbolt's first page is a meta page: a 16-byte page header, then the magic.
	const boltMagic = 0xED0CDAED
	if magic := binary.LittleEndian.Uint32(buf.Bytes()[16:20]); magic != boltMagic {
		t.Fatalf("snapshot starts with magic %#x; want bbolt's %#x", magic, boltMagic)
	}

	path := filepath.Join(t.TempDir(), "snapshot.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("opening the snapshot with bbolt: %v", err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		// etcd keeps every revision of every key in the "key" bucket.
		bucket := tx.Bucket([]byte("key"))
		if bucket == nil {
			return errors.New(`no "key" bucket`)
		}
		if got := bucket.Stats().KeyN; got < keys {
			t.Errorf("snapshot holds %d revisions of keys; want at least %d", got, keys)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
