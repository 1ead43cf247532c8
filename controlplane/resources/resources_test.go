package resources_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/controlplane/store"
)

func TestKeys(t *testing.T) {
	k := resources.Key("Route", "shop", "web")
	if k != "resources/Route/shop/web" {
		t.Fatalf("Key = %q", k)
	}
	kind, ns, name, ok := resources.ParseKey(k)
	if !ok || kind != "Route" || ns != "shop" || name != "web" {
		t.Errorf("ParseKey(%q) = %q %q %q %v", k, kind, ns, name, ok)
	}
	for _, bad := range []string{"resources/Route/shop", "resources/Route//web", "status/x", "resources/Route/shop/web/extra"} {
		if _, _, _, ok := resources.ParseKey(bad); ok {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
	if v, err := resources.ParseVersion("42"); err != nil || v != 42 {
		t.Errorf("ParseVersion(42) = %d, %v", v, err)
	}
	for _, bad := range []string{"-1", "0", "x"} {
		if _, err := resources.ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}

// TestIndexFollowsTheStore: the index lists what is there, then applies puts and
// deletes in order, ignoring keys outside its prefix.
func TestIndexFollowsTheStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	k1 := resources.Key("Cluster", "shop", "api")
	if _, err := st.Put(ctx, k1, []byte("v1"), store.Any); err != nil {
		t.Fatal(err)
	}
	ix := resources.NewIndex(ctx, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	select {
	case <-ix.Ready():
	case <-ctx.Done():
		t.Fatal("index never ready")
	}
	if v, _ := ix.View(); len(v.ByKey) != 1 || string(v.ByKey[k1].YAML) != "v1" {
		t.Fatalf("first view: %+v", v.ByKey)
	}
	k2 := resources.Key("Route", "shop", "web")
	rev, err := st.Put(ctx, k2, []byte("r1"), store.MustNotExist)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "status/node-1", []byte("x"), store.Any); err != nil {
		t.Fatal(err)
	}
	v, err := ix.WaitRevision(ctx, rev)
	if err != nil {
		t.Fatal(err)
	}
	if r := v.ByKey[k2]; string(r.YAML) != "r1" || r.Version != rev || r.Kind != "Route" {
		t.Errorf("after put: %+v", r)
	}
	if err := st.Delete(ctx, k1, store.Any); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ch := ix.View()
		if _, ok := v.ByKey[k1]; !ok {
			if len(v.ByKey) != 1 {
				t.Errorf("after delete: %d resources, want 1 (status keys are not resources)", len(v.ByKey))
			}
			if s := v.Sorted(); len(s) != 1 || s[0].Name != "web" {
				t.Errorf("Sorted = %+v", s)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the index never saw the delete")
		}
		select {
		case <-ch:
		case <-time.After(time.Second):
		}
	}
}
