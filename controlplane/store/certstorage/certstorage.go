// Package certstorage keeps certmagic's data (certificates, private keys, ACME
// accounts, OCSP staples) and its locks in the control plane's store, so that every
// control-plane replica shares one set of certificates and only one of them
// obtains or renews a given certificate at a time.
//
// It maps certmagic.Storage onto store.Store: a certmagic key "a/b/c.crt" is the
// store key <prefix>a/b/c.crt; directories are implicit, as certmagic's contract
// says; locks are store locks (bound to the store's lease, so a replica that dies
// releases them). It is not a cache: every call reads or writes the store.
package certstorage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/portcullis/portcullis/controlplane/store"
)

// DefaultPrefix is the store key prefix used when New is given none.
const DefaultPrefix = "certmagic/"

// Storage is a certmagic.Storage over a store.Store. It is safe for concurrent use.
type Storage struct {
	store  store.Store
	prefix string // ends with "/"

	mu      sync.Mutex
	unlocks map[string]func() error // held locks by certmagic lock name
}

var _ certmagic.Storage = (*Storage)(nil)

// New returns a Storage keeping its keys under prefix in s (DefaultPrefix when
// empty; surrounding slashes are ignored). Storages on the same store with the same
// prefix share data and locks, in one process or many.
func New(s store.Store, prefix string) *Storage {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		prefix = strings.TrimSuffix(DefaultPrefix, "/")
	}
	return &Storage{store: s, prefix: prefix + "/", unlocks: make(map[string]func() error)}
}

// Values are stored with a small header carrying the write time, which certmagic
// reads through Stat (to pick the most recent ACME account, for one):
//
//	byte 0     format version (1)
//	bytes 1-8  write time, Unix nanoseconds, big-endian
//	bytes 9-   the value
const (
	formatVersion = 1
	headerLen     = 9
)

func encode(value []byte, modified time.Time) []byte {
	out := make([]byte, headerLen+len(value))
	out[0] = formatVersion
	binary.BigEndian.PutUint64(out[1:headerLen], uint64(modified.UnixNano()))
	copy(out[headerLen:], value)
	return out
}

func decode(key string, raw []byte) (value []byte, modified time.Time, err error) {
	if len(raw) < headerLen || raw[0] != formatVersion {
		return nil, time.Time{}, fmt.Errorf("certstorage: %q was not written by certstorage (no version %d header)", key, formatVersion)
	}
	nanos := int64(binary.BigEndian.Uint64(raw[1:headerLen]))
	return raw[headerLen:], time.Unix(0, nanos), nil
}

// Store writes value at key, replacing any value there.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	full, err := s.fileKey("store", key)
	if err != nil {
		return err
	}
	if _, err := s.store.Put(ctx, full, encode(value, time.Now()), store.Any); err != nil {
		return fmt.Errorf("certstorage: store %q: %w", key, err)
	}
	return nil
}

// Load returns the value at key; a missing key is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	full, err := s.fileKey("load", key)
	if err != nil {
		return nil, err
	}
	kv, err := s.store.Get(ctx, full)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("certstorage: load %q: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("certstorage: load %q: %w", key, err)
	}
	value, _, err := decode(key, kv.Value)
	return value, err
}

// Delete removes key and, when key is also a directory, every key below it. A
// missing key is not an error.
func (s *Storage) Delete(ctx context.Context, key string) error {
	full, err := s.fileKey("delete", key)
	if err != nil {
		return err
	}
	if err := s.store.Delete(ctx, full, store.Any); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("certstorage: delete %q: %w", key, err)
	}
	below, _, err := s.store.List(ctx, full+"/")
	if err != nil {
		return fmt.Errorf("certstorage: delete %q: listing keys below it: %w", key, err)
	}
	for _, kv := range below {
		if err := s.store.Delete(ctx, kv.Key, store.Any); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("certstorage: delete %q: %w", key, err)
		}
	}
	return nil
}

// Exists reports whether key is a file or a directory; errors count as absent.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// Stat describes key: a file with its size and write time, or a directory (a
// prefix of other keys). A missing key is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	full, err := s.fileKey("stat", key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	kv, err := s.store.Get(ctx, full)
	switch {
	case err == nil:
		value, modified, err := decode(key, kv.Value)
		if err != nil {
			return certmagic.KeyInfo{}, err
		}
		return certmagic.KeyInfo{Key: key, Modified: modified, Size: int64(len(value)), IsTerminal: true}, nil
	case !errors.Is(err, store.ErrNotFound):
		return certmagic.KeyInfo{}, fmt.Errorf("certstorage: stat %q: %w", key, err)
	}
	below, _, err := s.store.List(ctx, full+"/")
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("certstorage: stat %q: %w", key, err)
	}
	if len(below) == 0 {
		return certmagic.KeyInfo{}, fmt.Errorf("certstorage: stat %q: %w", key, fs.ErrNotExist)
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// List returns the keys below dir ("" for all), as certmagic's FileStorage does:
// without recursive, the files and directories directly in dir; with it, every
// file and directory at any depth. Keys are full (dir included) and sorted. A dir
// that does not exist is an error satisfying errors.Is(err, fs.ErrNotExist); a dir
// that is a file lists nothing.
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	dir = strings.Trim(dir, "/")
	listPrefix := s.prefix
	if dir != "" {
		listPrefix += dir + "/"
	}
	kvs, _, err := s.store.List(ctx, listPrefix)
	if err != nil {
		return nil, fmt.Errorf("certstorage: list %q: %w", dir, err)
	}
	if len(kvs) == 0 {
		if dir != "" {
			if _, err := s.store.Get(ctx, s.prefix+dir); err == nil {
				return nil, nil
			}
		}
		return nil, fmt.Errorf("certstorage: list %q: %w", dir, fs.ErrNotExist)
	}
	seen := make(map[string]struct{})
	for _, kv := range kvs {
		parts := strings.Split(strings.TrimPrefix(kv.Key, listPrefix), "/")
		depth := 1
		if recursive {
			depth = len(parts)
		}
		for i := 1; i <= depth; i++ {
			seen[path.Join(dir, path.Join(parts[:i]...))] = struct{}{}
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

// Lock takes the named lock, shared by every Storage with the same prefix on the
// same store; it blocks until held or ctx is done.
func (s *Storage) Lock(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("certstorage: lock: empty name")
	}
	unlock, err := s.store.Lock(ctx, s.prefix+name)
	if err != nil {
		return fmt.Errorf("certstorage: lock %q: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The store lock excludes other holders in this process too, so no entry for
	// name can be present here.
	s.unlocks[name] = unlock
	return nil
}

// Unlock releases a lock taken with Lock on this Storage.
func (s *Storage) Unlock(_ context.Context, name string) error {
	s.mu.Lock()
	unlock, ok := s.unlocks[name]
	delete(s.unlocks, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("certstorage: unlock %q: not locked through this storage", name)
	}
	if err := unlock(); err != nil {
		return fmt.Errorf("certstorage: unlock %q: %w", name, err)
	}
	return nil
}

// String names the storage in certmagic's logs.
func (s *Storage) String() string { return "certstorage:" + s.prefix }

// fileKey maps a certmagic key to a store key. Surrounding slashes are dropped;
// an empty key (the root directory) is refused for file operations, Delete
// included, so nothing can delete every key at once.
func (s *Storage) fileKey(op, key string) (string, error) {
	key = strings.Trim(key, "/")
	if key == "" {
		return "", fmt.Errorf("certstorage: %s: empty key", op)
	}
	return s.prefix + key, nil
}
