package cpclient

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/gateway/config"
)

const doc = "apiVersion: portcullis.dev/v1alpha1\nkind: Telemetry\nmetadata: {name: t, namespace: shop}\nspec: {accessLog: all}\n"

func TestLastKnownGoodRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := loadLKG(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty dir: %v; want not-exist", err)
	}
	for _, v := range []string{"v1", "v2"} {
		if err := saveLKG(dir, v, []byte(doc)); err != nil {
			t.Fatal(err)
		}
		gotV, gotDocs, err := loadLKG(dir)
		if err != nil || gotV != v || string(gotDocs) != doc {
			t.Fatalf("loaded %q %q %v; want %q and the documents", gotV, gotDocs, err, v)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != LKGFile {
		t.Errorf("dir holds %v; want only %s (no temp files left)", ents, LKGFile)
	}
	// The file is plain YAML with a comment header: a proxy run from files reads it.
	if _, _, err := config.LoadFiles(filepath.Join(dir, LKGFile)); err != nil {
		t.Errorf("the LKG file does not load as a config file: %v", err)
	}
	if err := saveLKG(dir, "v\n3", []byte(doc)); err == nil {
		t.Error("a version with a line break was saved")
	}
}

func TestCorruptLastKnownGoodIsSkipped(t *testing.T) {
	for name, content := range map[string]string{
		"no header":     doc,
		"bad documents": lkgHeader + "v1\nkind: [\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, LKGFile), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			applied := 0
			c := &client{o: Options{DataDir: dir, Apply: func(*config.Set, []byte) error { applied++; return nil }}, log: slog.New(slog.DiscardHandler)}
			c.startFromLastKnownGood()
			if applied != 0 || c.running != "" {
				t.Errorf("a corrupt file was applied (%d) or claimed as running %q", applied, c.running)
			}
		})
	}
}

func TestStartsFromLastKnownGoodBeforeDialling(t *testing.T) {
	dir := t.TempDir()
	if err := saveLKG(dir, "v7", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	applied := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// Nothing listens on this address: the config must come from the file.
		done <- Run(ctx, Options{Addresses: []string{"127.0.0.1:1"}, Role: "ingress", Namespace: "shop", Name: "gw", Node: "n", DataDir: dir,
			Logger: slog.New(slog.DiscardHandler), MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
			Apply: func(set *config.Set, raw []byte) error {
				applied <- strings.TrimSpace(string(raw))
				return nil
			}})
	}()
	select {
	case raw := <-applied:
		if raw != strings.TrimSpace(doc) {
			t.Errorf("applied %q", raw)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the last-known-good config was not applied")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestBackoffGrowsToTheCapWithJitter(t *testing.T) {
	lo, hi := 500*time.Millisecond, 30*time.Second
	prevMax := time.Duration(0)
	for n := range 64 {
		d := backoff(lo, hi, n)
		ceil := min(hi, lo<<min(n, 30))
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d waits %v; want within [%v, %v]", n, d, ceil/2, ceil)
		}
		prevMax = max(prevMax, d)
	}
	if prevMax < hi/2 {
		t.Errorf("the wait never came near the cap: at most %v", prevMax)
	}
}

func TestOptionsAreChecked(t *testing.T) {
	ok := Options{Addresses: []string{"a:1", "b:1"}, Role: "ingress", Namespace: "n", Name: "g", Node: "x", Apply: func(*config.Set, []byte) error { return nil }}
	for want, mutate := range map[string]func(*Options){
		"Options.Addresses is required":           func(o *Options) { o.Addresses = nil },
		"Options.Addresses[1] is empty":           func(o *Options) { o.Addresses = []string{"a:1", ""} },
		`Addresses[2] "a:1" repeats Addresses[0]`: func(o *Options) { o.Addresses = []string{"a:1", "b:1", "a:1"} },
		"Options.Node":                            func(o *Options) { o.Node = "" },
		"Options.Apply":                           func(o *Options) { o.Apply = nil },
	} {
		o := ok
		mutate(&o)
		if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v; want an error saying %q", err, want)
		}
	}
}

// An empty config is refused while the proxy serves one: it is what a control
// plane that lost its store would send.
func TestEmptyConfigIsRefusedWhileServing(t *testing.T) {
	applied := 0
	c := &client{o: Options{Apply: func(*config.Set, []byte) error { applied++; return nil }}, log: slog.New(slog.DiscardHandler)}
	if a := c.apply(&cpv1.ConfigUpdate{Version: "empty0"}); !a.GetAccepted() {
		t.Fatalf("an empty first config was refused: %s", a.GetError())
	}
	if a := c.apply(&cpv1.ConfigUpdate{Version: "v1", Documents: []byte(doc)}); !a.GetAccepted() || c.running != "v1" {
		t.Fatalf("v1 refused: %s", a.GetError())
	}
	a := c.apply(&cpv1.ConfigUpdate{Version: "empty1"})
	if a.GetAccepted() || !strings.Contains(a.GetError(), "empty config") || c.running != "v1" || applied != 2 {
		t.Errorf("empty config while serving v1: accepted=%v error=%q running=%s applied=%d; want a NACK, v1 kept", a.GetAccepted(), a.GetError(), c.running, applied)
	}
}
