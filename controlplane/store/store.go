// Package store is the control plane's durable state: resources, registry entries,
// certificates and ACME locks, the audit log. One interface, Store, has one
// implementation backed by etcd's v3 API, reached in two ways:
//
//   - OpenEmbedded runs a single etcd member inside the process with its data under
//     a directory: the default, which needs no set-up.
//   - OpenCluster connects to an external etcd cluster, for several control-plane
//     replicas and for when one machine is not enough.
//
// Both pass the same conformance suite (storetest). Keys are plain strings with "/"
// separators; values are opaque bytes. Every write is conditional on a revision, so
// a stale writer gets ErrConflict instead of overwriting silently.
//
// It is not for: validation (callers store what the gateway's config package has
// already accepted) or caching for proxies (the push server keeps its own view).
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned for a key that does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned by a conditional write whose expected revision does not
// match the key's current one.
var ErrConflict = errors.New("store: revision conflict")

// Revision values with a meaning of their own for Put and Delete.
const (
	// MustNotExist makes Put fail with ErrConflict if the key exists.
	MustNotExist int64 = 0
	// Any makes Put and Delete unconditional.
	Any int64 = -1
)

// KV is one key with its value and the revision of its last change.
type KV struct {
	Key   string
	Value []byte
	// ModRevision is the store revision at which the key was last written; pass it
	// back to Put or Delete to make the write conditional on nobody else having
	// written the key since.
	ModRevision int64
}

// EventType says what happened to a key.
type EventType int

const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one change seen by a watch. For EventDelete, KV.Value is nil.
type Event struct {
	Type EventType
	KV   KV
}

// WatchResponse is one batch of events, all at one store revision. Err is set, and
// the channel then closed, when the watch can no longer continue (the revision asked
// for was compacted away, or the store was closed): the watcher should List again.
type WatchResponse struct {
	Revision int64
	Events   []Event
	Err      error
}

// Store is the control plane's durable key-value state.
type Store interface {
	// Get returns one key, or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns every key under prefix, sorted by key, and the store revision
	// the listing was read at (one consistent snapshot); pass that revision to
	// Watch as afterRevision to see every later change and miss none.
	List(ctx context.Context, prefix string) ([]KV, int64, error)
	// Put writes a key if its current revision is expect (MustNotExist: the key must
	// be absent; Any: unconditionally) and returns the new revision; ErrConflict
	// otherwise.
	Put(ctx context.Context, key string, value []byte, expect int64) (int64, error)
	// PutWithTTL writes a key unconditionally that disappears ttl after its last
	// write unless written again (registry heartbeats, presence).
	PutWithTTL(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error)
	// Delete removes a key if its current revision is expect (or Any); ErrNotFound
	// when absent, ErrConflict on a revision mismatch.
	Delete(ctx context.Context, key string, expect int64) error
	// Watch streams changes under prefix strictly after revision afterRevision
	// (usually the revision a List returned), until ctx is done.
	Watch(ctx context.Context, prefix string, afterRevision int64) <-chan WatchResponse
	// Lock takes a named lock shared by every process using the same store (and
	// by every caller within this one), blocking until it is held or ctx is done.
	// The lock is released by the returned function, or automatically if this
	// process dies or closes the store (it is bound to a lease).
	Lock(ctx context.Context, name string) (unlock func() error, err error)
	// Campaign blocks until this process is the leader of election name (or ctx is
	// done), then returns a Leadership that reports its loss.
	Campaign(ctx context.Context, name, candidate string) (Leadership, error)
	// Close releases the store; an embedded member stops.
	Close() error
}

// Leadership is held by the winner of an election until Resign, or until the
// process loses its lease (a partition, a stalled process), which closes Lost.
type Leadership interface {
	// Lost is closed when leadership ends for any reason.
	Lost() <-chan struct{}
	// Resign gives leadership up so that another candidate can win at once.
	Resign(ctx context.Context) error
}
