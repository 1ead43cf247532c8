package auth_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/store"
)

// TestAuditLogReplicasNeverOverwrite appends from two logs (two replicas) on one
// real embedded store at once: every entry must survive, with dense, unique
// sequences, and a log opened later continues after them.
func TestAuditLogReplicasNeverOverwrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := []*auth.AuditLog{auth.NewAuditLog(st, nil), auth.NewAuditLog(st, nil)}
	const perReplica = 15
	var wg sync.WaitGroup
	errs := make(chan error, 2*perReplica)
	for r, l := range logs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perReplica {
				if _, err := l.Append(ctx, &cpv1.AuditEntry{Principal: fmt.Sprintf("token:r%d", r), Action: "apply", Name: fmt.Sprint(i)}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	entries, err := logs[0].List(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2*perReplica {
		t.Fatalf("%d entries, want %d", len(entries), 2*perReplica)
	}
	seen := map[string]bool{}
	for i, e := range entries {
		if e.Sequence != int64(i+1) {
			t.Fatalf("entry %d has sequence %d", i, e.Sequence)
		}
		seen[e.Principal+"/"+e.Name] = true
	}
	if len(seen) != 2*perReplica {
		t.Fatalf("entries were overwritten: %d distinct of %d", len(seen), 2*perReplica)
	}
	seq, err := auth.NewAuditLog(st, nil).Append(ctx, &cpv1.AuditEntry{Action: "later"})
	if err != nil || seq != 2*perReplica+1 {
		t.Fatalf("a new log appended at %d (%v), want %d", seq, err, 2*perReplica+1)
	}
}

// TestAuditListAcrossKeyBlocks lists ranges that span two key prefixes.
func TestAuditListAcrossKeyBlocks(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	l := auth.NewAuditLog(st, nil)
	for i := 1; i <= 2010; i++ {
		if _, err := l.Append(ctx, &cpv1.AuditEntry{Action: "get", Name: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		after        int64
		limit, want  int
		first, final int64
	}{
		{0, 0, 100, 1, 100},
		{995, 10, 10, 996, 1005},
		{999, 1, 1, 1000, 1000},
		{1500, 1000, 510, 1501, 2010},
		{10, 5000, 1000, 11, 1010},
		{2010, 10, 0, 0, 0},
	} {
		got, err := l.List(ctx, tc.after, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want || tc.want > 0 && (got[0].Sequence != tc.first || got[len(got)-1].Sequence != tc.final) {
			t.Errorf("List(%d, %d): %d entries, want %d from %d to %d", tc.after, tc.limit, len(got), tc.want, tc.first, tc.final)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Sequence != got[i-1].Sequence+1 || got[i].Name != fmt.Sprint(got[i].Sequence) {
				t.Fatalf("List(%d, %d) is not in order at %d", tc.after, tc.limit, i)
			}
		}
	}
	if !strings.HasPrefix(auth.AuditKey(7), "audit/0000000000000000000") || len(auth.AuditKey(7)) != len("audit/")+20 {
		t.Fatalf("key %q", auth.AuditKey(7))
	}
}

// memStore is the part of store.Store the audit log uses, in memory, to test
// listing over thousands of entries fast. Everything else panics.
type memStore struct {
	store.Store
	mu  sync.Mutex
	rev int64
	kv  map[string]store.KV
}

func newMemStore() *memStore { return &memStore{kv: map[string]store.KV{}} }

func (m *memStore) Get(_ context.Context, key string) (store.KV, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	kv, ok := m.kv[key]
	if !ok {
		return store.KV{}, store.ErrNotFound
	}
	return kv, nil
}

func (m *memStore) List(_ context.Context, prefix string) ([]store.KV, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.KV
	for k, kv := range m.kv {
		if strings.HasPrefix(k, prefix) {
			out = append(out, kv)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, m.rev, nil
}

func (m *memStore) Put(_ context.Context, key string, value []byte, expect int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, exists := m.kv[key]
	switch {
	case expect == store.MustNotExist && exists, expect > 0 && cur.ModRevision != expect:
		return 0, store.ErrConflict
	}
	m.rev++
	m.kv[key] = store.KV{Key: key, Value: value, ModRevision: m.rev}
	return m.rev, nil
}
