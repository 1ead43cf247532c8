package edgetoken

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// MaxFileBytes bounds a key file: sixteen 8192-bit RSA keys fit several times over.
const MaxFileBytes = 256 << 10

// Registry shares Signers per key file: Load returns the same *Signer for a path
// for as long as the file's contents stay the same, and a new one once they
// change. Safe for concurrent use.
//
// The contents decide, not the modification time: a file rewritten within the
// same second, or restored from a backup with its old time, must not keep the
// old keys.
type Registry struct {
	mu     sync.Mutex
	byPath map[string]*Signer // the newest Signer of each file; older ones live on in the snapshots that hold them
}

// NewRegistry returns an empty registry. The gateway uses the one behind Load;
// tests make their own.
func NewRegistry() *Registry { return &Registry{byPath: map[string]*Signer{}} }

var shared = NewRegistry()

// Load is Registry.Load on the process-wide registry, which every filter shares,
// so that routes naming the same key file sign with one key set and publish one
// JWK Set, across reloads.
func Load(path string) (*Signer, error) { return shared.Load(path) }

// Load reads the key file at path and returns its Signer: the one returned before
// if the contents are unchanged, else a new one. A file that cannot be read or
// parsed is an error naming the path, and leaves the registry as it was.
func (r *Registry) Load(path string) (*Signer, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	data, err := readFile(abs)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(data)
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.byPath[abs]; s != nil && s.digest == digest {
		return s, nil
	}
	s, err := NewSigner(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.byPath[abs] = s
	return s, nil
}

// readFile reads at most MaxFileBytes of a regular file.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes; it should hold a few private keys", path, MaxFileBytes)
	}
	return data, nil
}
