package certstorage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/controlplane/store/certstorage"
)

// member is one embedded etcd shared by the package's tests; each test works under
// a prefix of its own.
var member *store.Etcd

func TestMain(m *testing.M) {
	os.Exit(runWithMember(m))
}

func runWithMember(m *testing.M) int {
	dir, err := os.MkdirTemp("", "certstorage-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	member, err = store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer member.Close()
	return m.Run()
}

func uniquePrefix(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "certstorage-test/" + hex.EncodeToString(b[:])
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStoreLoadDelete(t *testing.T) {
	ctx := testContext(t)
	s := certstorage.New(member, uniquePrefix(t))
	key := "certificates/acme/example.com/example.com.crt"

	if _, err := s.Load(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: err = %v, want fs.ErrNotExist", err)
	}
	if err := s.Store(ctx, key, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := s.Store(ctx, key, []byte("second")); err != nil {
		t.Fatalf("Store over an existing key: %v", err)
	}
	if got, err := s.Load(ctx, key); err != nil || string(got) != "second" {
		t.Fatalf("Load = %q, %v; want the last stored value", got, err)
	}
	if err := s.Store(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, "empty"); err != nil || len(got) != 0 {
		t.Fatalf("Load of an empty value = %q, %v", got, err)
	}
	if err := s.Store(ctx, "", []byte("x")); err == nil {
		t.Fatal("Store with an empty key succeeded")
	}

	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load after Delete: err = %v, want fs.ErrNotExist", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete of a missing key: %v, want nil", err)
	}
	if err := s.Delete(ctx, ""); err == nil {
		t.Fatal("Delete of the root succeeded; it must be refused")
	}
}

// TestDeleteDirectory: deleting a directory deletes what is below it and nothing
// that merely shares its string prefix.
func TestDeleteDirectory(t *testing.T) {
	ctx := testContext(t)
	s := certstorage.New(member, uniquePrefix(t))
	for _, k := range []string{"a/b/c", "a/d", "ab/e", "a"} {
		if err := s.Store(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "a/b/c", "a/d"} {
		if s.Exists(ctx, k) {
			t.Errorf("%s exists after deleting a", k)
		}
	}
	if got, err := s.Load(ctx, "ab/e"); err != nil || string(got) != "ab/e" {
		t.Fatalf("ab/e after deleting a: %q, %v; want it untouched", got, err)
	}
}

// TestMatchesFileStorage writes the same keys into certmagic's FileStorage and into
// a Storage, then asks both the same questions: List (recursive and not, from
// several directories, including missing ones and a file), Exists and Stat.
func TestMatchesFileStorage(t *testing.T) {
	ctx := testContext(t)
	ours := certstorage.New(member, uniquePrefix(t))
	reference := &certmagic.FileStorage{Path: t.TempDir()}
	keys := []string{
		"acme/ca-one/users/me@example.com/me.json",
		"acme/ca-one/users/me@example.com/me.key",
		"acme/ca-two/users/other/other.json",
		"certificates/ca-one/example.com/example.com.crt",
		"certificates/ca-one/example.com/example.com.key",
		"certificates/ca-one/example.com/example.com.json",
		"certificates/ca-one/wildcard_.example.org/wildcard_.example.org.crt",
		"ocsp/example.com-abc123",
		"top-level-file",
	}
	for i, k := range keys {
		value := bytes.Repeat([]byte{'x'}, i+1)
		for _, st := range []certmagic.Storage{ours, reference} {
			if err := st.Store(ctx, k, value); err != nil {
				t.Fatalf("%s: Store(%s): %v", st, k, err)
			}
		}
	}

	dirs := []string{"", "acme", "acme/ca-one", "certificates", "certificates/ca-one/example.com",
		"ocsp", "missing", "acme/ca-three", "top-level-file", "certificates/ca"}
	for _, dir := range dirs {
		for _, recursive := range []bool{false, true} {
			want, wantErr := reference.List(ctx, dir, recursive)
			got, gotErr := ours.List(ctx, dir, recursive)
			slices.Sort(want)
			if wantNotExist, gotNotExist := errors.Is(wantErr, fs.ErrNotExist), errors.Is(gotErr, fs.ErrNotExist); wantNotExist != gotNotExist || (wantErr == nil) != (gotErr == nil) {
				t.Errorf("List(%q, %v) error = %v; FileStorage says %v", dir, recursive, gotErr, wantErr)
				continue
			}
			if !slices.Equal(got, want) {
				t.Errorf("List(%q, %v) =\n  %q\nFileStorage lists\n  %q", dir, recursive, got, want)
			}
		}
	}

	probes := append(slices.Clone(keys), "acme", "acme/ca-one/users", "certificates/ca", "nothing", "ocsp/example.com")
	for _, k := range probes {
		if got, want := ours.Exists(ctx, k), reference.Exists(ctx, k); got != want {
			t.Errorf("Exists(%q) = %v; FileStorage says %v", k, got, want)
		}
		wantInfo, wantErr := reference.Stat(ctx, k)
		gotInfo, gotErr := ours.Stat(ctx, k)
		if errors.Is(wantErr, fs.ErrNotExist) != errors.Is(gotErr, fs.ErrNotExist) || (wantErr == nil) != (gotErr == nil) {
			t.Errorf("Stat(%q) error = %v; FileStorage says %v", k, gotErr, wantErr)
			continue
		}
		if wantErr != nil {
			continue
		}
		if gotInfo.Key != k || gotInfo.IsTerminal != wantInfo.IsTerminal || (wantInfo.IsTerminal && gotInfo.Size != wantInfo.Size) {
			t.Errorf("Stat(%q) = %+v; FileStorage says %+v", k, gotInfo, wantInfo)
		}
	}
}

// TestStatModified: Stat reports the write time, which certmagic compares to pick
// the newest ACME account.
func TestStatModified(t *testing.T) {
	ctx := testContext(t)
	s := certstorage.New(member, uniquePrefix(t))
	before := time.Now()
	if err := s.Store(ctx, "acme/users/a.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	info, err := s.Stat(ctx, "acme/users/a.json")
	if err != nil {
		t.Fatal(err)
	}
	if info.Modified.Before(before) || info.Modified.After(after) {
		t.Fatalf("Modified = %v; want within the Store call [%v, %v]", info.Modified, before, after)
	}
	if info.Size != 2 || !info.IsTerminal {
		t.Fatalf("Stat = %+v; want a 2-byte file", info)
	}
	if dir, err := s.Stat(ctx, "acme/users"); err != nil || dir.IsTerminal {
		t.Fatalf("Stat of a directory = %+v, %v; want IsTerminal false", dir, err)
	}
	if _, err := s.Stat(ctx, "acme/nobody"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a missing key: err = %v, want fs.ErrNotExist", err)
	}
}

// TestForeignValue: a value written to the store by something else is reported as
// such, not handed to certmagic as a certificate.
func TestForeignValue(t *testing.T) {
	ctx := testContext(t)
	prefix := uniquePrefix(t)
	s := certstorage.New(member, prefix)
	if _, err := member.Put(ctx, prefix+"/foreign", []byte("raw"), store.Any); err != nil {
		t.Fatal(err)
	}
	_, err := s.Load(ctx, "foreign")
	if err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "not written by certstorage") {
		t.Fatalf("Load of a foreign value: err = %v; want a format error", err)
	}
}

// TestLocking: two Storages with one prefix exclude each other, whether they share
// one Store (two certmagic configs in one process) or use two (two replicas).
func TestLocking(t *testing.T) {
	ctx := testContext(t)
	other, err := store.OpenCluster(ctx, store.ClusterConfig{Endpoints: member.Endpoints(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })

	for _, tc := range []struct {
		name   string
		second store.Store
	}{
		{"same store", member},
		{"two stores", other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := uniquePrefix(t)
			a, b := certstorage.New(member, prefix), certstorage.New(tc.second, prefix)
			const name = "issue_cert_example.com"
			if err := a.Lock(ctx, name); err != nil {
				t.Fatal(err)
			}
			short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			err := b.Lock(short, name)
			cancel()
			if err == nil {
				t.Fatal("B took the lock A holds")
			}
			if err := b.Unlock(ctx, name); err == nil {
				t.Fatal("B unlocked a lock it does not hold")
			}

			acquired := make(chan error, 1)
			go func() { acquired <- b.Lock(ctx, name) }()
			select {
			case err := <-acquired:
				t.Fatalf("B's Lock returned (%v) while A holds the lock", err)
			case <-time.After(300 * time.Millisecond):
			}
			if err := a.Unlock(ctx, name); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-acquired:
				if err != nil {
					t.Fatalf("B's Lock after A's Unlock: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("B did not get the lock within 15s of A's Unlock")
			}
			if err := b.Unlock(ctx, name); err != nil {
				t.Fatal(err)
			}

			// A different prefix is a different lock.
			c := certstorage.New(tc.second, uniquePrefix(t))
			if err := a.Lock(ctx, name); err != nil {
				t.Fatal(err)
			}
			short, cancel = context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := c.Lock(short, name); err != nil {
				t.Fatalf("a storage with another prefix waited on the lock: %v", err)
			}
			for _, st := range []*certstorage.Storage{a, c} {
				if err := st.Unlock(ctx, name); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
