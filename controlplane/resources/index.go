package resources

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/portcullis/portcullis/controlplane/store"
)

// View is every resource at one store revision. It is immutable: readers may keep it
// as long as they like.
type View struct {
	Revision int64
	// ByKey maps a store key (Key) to its resource.
	ByKey map[string]Resource
}

// Sorted returns the resources ordered by key.
func (v *View) Sorted() []Resource {
	out := make([]Resource, 0, len(v.ByKey))
	for _, r := range v.ByKey {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		return Key(out[i].Kind, out[i].Namespace, out[i].Name) < Key(out[j].Kind, out[j].Namespace, out[j].Name)
	})
	return out
}

// Index follows the resources in a store: it lists them once, then applies the
// store's watch events, and publishes a new View after every batch. When the watch
// fails (the store compacted past it, a connection was lost) it lists again.
type Index struct {
	st  store.Store
	log *slog.Logger

	mu      sync.Mutex
	view    *View
	changed chan struct{} // closed and replaced on every new view
	ready   chan struct{}
}

// NewIndex starts following st until ctx ends. Wait for the first view with Ready.
func NewIndex(ctx context.Context, st store.Store, log *slog.Logger) *Index {
	ix := &Index{
		st:      st,
		log:     log,
		view:    &View{ByKey: map[string]Resource{}},
		changed: make(chan struct{}),
		ready:   make(chan struct{}),
	}
	go ix.run(ctx)
	return ix
}

// Ready is closed once the index holds its first complete listing.
func (ix *Index) Ready() <-chan struct{} { return ix.ready }

// View returns the current view and a channel closed when a newer one exists.
func (ix *Index) View() (*View, <-chan struct{}) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.view, ix.changed
}

// WaitRevision blocks until the index has seen revision rev, or until ctx ends.
// rev must be the revision of a write under Prefix (a resource's Put or Delete):
// the index advances only on resource events, so waiting for the revision of a
// write elsewhere in the store (an audit record, say) lasts until the next
// resource write.
func (ix *Index) WaitRevision(ctx context.Context, rev int64) (*View, error) {
	for {
		v, ch := ix.View()
		if v.Revision >= rev {
			return v, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for store revision %d (index at %d): %w", rev, v.Revision, ctx.Err())
		}
	}
}

func (ix *Index) publish(v *View) {
	ix.mu.Lock()
	ix.view = v
	close(ix.changed)
	ix.changed = make(chan struct{})
	ix.mu.Unlock()
}

func (ix *Index) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		kvs, rev, err := ix.st.List(ctx, Prefix)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			ix.log.Warn("listing resources failed; retrying", "err", err, "in", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		byKey := make(map[string]Resource, len(kvs))
		for _, kv := range kvs {
			if r, ok := fromKV(kv); ok {
				byKey[kv.Key] = r
			}
		}
		ix.publish(&View{Revision: rev, ByKey: byKey})
		if first {
			close(ix.ready)
			first = false
		}
		ix.follow(ctx, rev, byKey)
	}
}

// follow applies watch batches until the watch ends.
func (ix *Index) follow(ctx context.Context, rev int64, byKey map[string]Resource) {
	for wr := range ix.st.Watch(ctx, Prefix, rev) {
		if wr.Err != nil {
			if ctx.Err() == nil {
				ix.log.Warn("resource watch ended; listing again", "err", wr.Err)
			}
			return
		}
		next := make(map[string]Resource, len(byKey)+len(wr.Events))
		for k, r := range byKey {
			next[k] = r
		}
		for _, ev := range wr.Events {
			switch ev.Type {
			case store.EventPut:
				if r, ok := fromKV(ev.KV); ok {
					next[ev.KV.Key] = r
				}
			case store.EventDelete:
				delete(next, ev.KV.Key)
			}
		}
		byKey = next
		ix.publish(&View{Revision: wr.Revision, ByKey: byKey})
	}
}

func fromKV(kv store.KV) (Resource, bool) {
	kind, ns, name, ok := ParseKey(kv.Key)
	if !ok {
		return Resource{}, false
	}
	return Resource{Kind: kind, Namespace: ns, Name: name, Version: kv.ModRevision, YAML: kv.Value}, true
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
