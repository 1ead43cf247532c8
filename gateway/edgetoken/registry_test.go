package edgetoken_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/gateway/edgetoken"
)

func TestRegistrySharesPerContents(t *testing.T) {
	k := keys()
	dir := t.TempDir()
	path := writeFile(t, dir, "keys.pem", join(sec1(k.ec1), sec1(k.ec2)))
	reg := edgetoken.NewRegistry()

	first, err := reg.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// The same file, named relatively, from many goroutines: one Signer.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([]*edgetoken.Signer, 8)
	for i := range got {
		wg.Go(func() {
			p := path
			if i%2 == 1 {
				p = rel
			}
			got[i], _ = reg.Load(p)
		})
	}
	wg.Wait()
	for i, s := range got {
		if s != first {
			t.Errorf("load %d returned another Signer for unchanged contents", i)
		}
	}

	// Rotation: the same keys in the other order. A new Signer, signing with the
	// key that was second; both still published.
	writeFile(t, dir, "keys.pem", join(sec1(k.ec2), sec1(k.ec1)))
	second, err := reg.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || second.KeyID() != first.KeyIDs()[1] || second.KeyIDs()[1] != first.KeyID() {
		t.Errorf("after rotation: kids %v, before %v", second.KeyIDs(), first.KeyIDs())
	}

	// A broken file is an error naming it, and does not replace the good Signer.
	writeFile(t, dir, "keys.pem", []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	if _, err := reg.Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("broken file: %v", err)
	}
	writeFile(t, dir, "keys.pem", join(sec1(k.ec2), sec1(k.ec1)))
	if again, err := reg.Load(path); err != nil || again != second {
		t.Errorf("after a failed load the unchanged contents got a new Signer (%v)", err)
	}

	// The package-level registry is one such registry.
	a, errA := edgetoken.Load(path)
	b, errB := edgetoken.Load(rel)
	if errA != nil || errB != nil || a != b {
		t.Errorf("Load: %p %v, %p %v", a, errA, b, errB)
	}
}

func TestRegistryFileErrors(t *testing.T) {
	dir := t.TempDir()
	big := writeFile(t, dir, "big.pem", make([]byte, edgetoken.MaxFileBytes+1))
	reg := edgetoken.NewRegistry()
	for _, tt := range []struct {
		name, path string
		want       string
	}{
		{"missing", filepath.Join(dir, "nope.pem"), "nope.pem"},
		{"directory", dir, "not a regular file"},
		{"too big", big, "larger than"},
		{"no key", writeFile(t, dir, "empty.pem", []byte("\n")), "empty.pem: no PEM-encoded private key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := reg.Load(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load = %v, %v; want an error containing %q", s, err, tt.want)
			}
		})
	}
}
