// Package certstore serves the control plane's CertStorage API: the ACME state of
// ingress proxies (accounts, private keys, certificates, OCSP staples) and their
// issuance locks, kept in the control plane's store. The replicas of an ingress
// then share one set of certificates and place one order per name without a
// shared disk; the proxies' side is gateway/certs/cpstorage.
//
// Who may call it: proxies whose credential is bound to role "ingress", and no
// one else (operators, egress proxies and sidecars get PermissionDenied, callers
// without a credential Unauthenticated). Each namespace has a key space of its
// own, <KeyPrefix><namespace>/, chosen by the namespace the caller's credential
// is bound to, never by the request: an ingress of namespace A can neither read,
// list, overwrite nor lock what an ingress of namespace B keeps.
//
// Locks are held by a stream (Lock is a bidirectional RPC): the control plane
// takes the store lock (controlplane/store's etcd mutex, in certstorage's lock
// space) when the stream asks, and releases it when the stream asks or ends for
// any reason. A proxy that dies, or whose connection drops, therefore releases
// its locks as soon as the control plane notices the connection is gone: at once
// when the connection closes, within gRPC's keepalive (about 40 s) when the peer
// vanishes silently. The other design, a lease renewed by the client with a TTL,
// would need a TTL long enough to ride out a slow renewal and would hold a dead
// proxy's lock for all of it; the stream ties the lock to the one thing that
// already tells whether the proxy is there. A replica that stops ends its lock
// streams (Close) and its store session, which releases them in etcd too.
//
// It is not for: obtaining certificates (the proxies do, with gateway/certs), or
// authentication (the server's interceptors put an auth.Principal in the
// context; this package decides what that principal may do).
package certstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/controlplane/store/certstorage"
)

// KeyPrefix is where the namespaces' key spaces live in the store:
// acme/<namespace>/<certmagic key>.
const KeyPrefix = "acme/"

// Limits on what one call may carry. certmagic's keys are short paths and its
// values are certificate chains, keys and small JSON documents: kilobytes.
const (
	MaxKeyLength   = 1024
	MaxValueBytes  = 1 << 20 // etcd refuses requests over 1.5 MiB by default
	maxLockNameLen = 512

	DefaultMaxLocksPerNamespace = 256
	DefaultAcquireTimeout       = 10 * time.Second
	storeTimeout                = 10 * time.Second // one store call, when the caller set no shorter deadline
)

// roleIngress is the proxy role that may use the storage (the value
// controlplane/auth accepts for a proxy token's role).
const roleIngress = "ingress"

// Options configure a Service. Store is required; every other field has a default.
type Options struct {
	Store store.Store
	// Logger receives refused calls and locks lost; nil discards them. Values are
	// never logged.
	Logger *slog.Logger
	// Registerer receives the service's metrics; nil registers none.
	Registerer prometheus.Registerer
	// MaxLocksPerNamespace bounds the Lock streams (held or waiting) of one
	// namespace, so that one proxy cannot tie up the store with waiters. Zero:
	// DefaultMaxLocksPerNamespace.
	MaxLocksPerNamespace int
	// AcquireTimeout bounds the wait for a Lock stream's first message. Zero:
	// DefaultAcquireTimeout.
	AcquireTimeout time.Duration
}

// Service implements cpv1.CertStorageServer. Its lifecycle: New, then serve;
// Close ends every Lock stream (releasing its lock) and refuses new ones.
type Service struct {
	cpv1.UnimplementedCertStorageServer

	st   store.Store
	log  *slog.Logger
	opts Options
	m    *metrics

	ctx    context.Context // cancelled by Close: ends the Lock streams
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	streams sync.WaitGroup // Lock handlers running
	locks   map[string]int // namespace -> Lock streams, held or waiting
}

var _ cpv1.CertStorageServer = (*Service)(nil)

// New builds a Service and registers its metrics.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("certstore: Options.Store is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxLocksPerNamespace <= 0 {
		opts.MaxLocksPerNamespace = DefaultMaxLocksPerNamespace
	}
	if opts.AcquireTimeout <= 0 {
		opts.AcquireTimeout = DefaultAcquireTimeout
	}
	s := &Service{st: opts.Store, log: opts.Logger, opts: opts, m: newMetrics(), locks: map[string]int{}}
	if opts.Registerer != nil {
		if err := s.m.register(opts.Registerer); err != nil {
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close ends every Lock stream, which releases its lock, and waits for them;
// later Lock calls get Unavailable (the proxy retries on another replica).
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.streams.Wait()
}

// Store writes a value.
func (s *Service) Store(ctx context.Context, req *cpv1.CertStoreRequest) (*cpv1.CertStoreResponse, error) {
	cs, p, err := s.storage(ctx, rpcStore)
	if err != nil {
		return nil, err
	}
	key, err := checkKey(req.GetKey(), false)
	if err != nil {
		return nil, s.refuse(rpcStore, p, codes.InvalidArgument, "%v", err)
	}
	if n := len(req.GetValue()); n > MaxValueBytes {
		return nil, s.refuse(rpcStore, p, codes.InvalidArgument, "the value of %q is %d bytes; at most %d are kept", key, n, MaxValueBytes)
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := cs.Store(ctx, key, req.GetValue()); err != nil {
		return nil, storeError(err)
	}
	return &cpv1.CertStoreResponse{}, nil
}

// Load reads a value.
func (s *Service) Load(ctx context.Context, req *cpv1.CertLoadRequest) (*cpv1.CertLoadResponse, error) {
	cs, p, err := s.storage(ctx, rpcLoad)
	if err != nil {
		return nil, err
	}
	key, err := checkKey(req.GetKey(), false)
	if err != nil {
		return nil, s.refuse(rpcLoad, p, codes.InvalidArgument, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	value, err := cs.Load(ctx, key)
	if err != nil {
		return nil, storeError(err)
	}
	return &cpv1.CertLoadResponse{Value: value}, nil
}

// Delete removes a key and everything below it.
func (s *Service) Delete(ctx context.Context, req *cpv1.CertDeleteRequest) (*cpv1.CertDeleteResponse, error) {
	cs, p, err := s.storage(ctx, rpcDelete)
	if err != nil {
		return nil, err
	}
	key, err := checkKey(req.GetKey(), false)
	if err != nil {
		return nil, s.refuse(rpcDelete, p, codes.InvalidArgument, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := cs.Delete(ctx, key); err != nil {
		return nil, storeError(err)
	}
	return &cpv1.CertDeleteResponse{}, nil
}

// Stat describes a key.
func (s *Service) Stat(ctx context.Context, req *cpv1.CertStatRequest) (*cpv1.CertKeyInfo, error) {
	cs, p, err := s.storage(ctx, rpcStat)
	if err != nil {
		return nil, err
	}
	key, err := checkKey(req.GetKey(), false)
	if err != nil {
		return nil, s.refuse(rpcStat, p, codes.InvalidArgument, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	info, err := cs.Stat(ctx, key)
	if err != nil {
		return nil, storeError(err)
	}
	out := &cpv1.CertKeyInfo{Key: info.Key, Size: info.Size, IsTerminal: info.IsTerminal}
	if !info.Modified.IsZero() {
		out.ModifiedUnixNano = info.Modified.UnixNano()
	}
	return out, nil
}

// List lists a directory.
func (s *Service) List(ctx context.Context, req *cpv1.CertListRequest) (*cpv1.CertListResponse, error) {
	cs, p, err := s.storage(ctx, rpcList)
	if err != nil {
		return nil, err
	}
	dir, err := checkKey(req.GetDirectory(), true)
	if err != nil {
		return nil, s.refuse(rpcList, p, codes.InvalidArgument, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	keys, err := cs.List(ctx, dir, req.GetRecursive())
	if err != nil {
		return nil, storeError(err)
	}
	return &cpv1.CertListResponse{Keys: keys}, nil
}

// storage authorizes the caller and returns the certstorage of its namespace.
func (s *Service) storage(ctx context.Context, rpc string) (*certstorage.Storage, auth.Principal, error) {
	p, err := s.authorize(ctx, rpc)
	if err != nil {
		return nil, p, err
	}
	return certstorage.New(s.st, KeyPrefix+p.ProxyNamespace), p, nil
}

// authorize admits ingress proxies only, and only with a namespace to confine
// them to.
func (s *Service) authorize(ctx context.Context, rpc string) (auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	switch {
	case !ok:
		return p, s.refuse(rpc, p, codes.Unauthenticated, "the call carries no credential")
	case p.Kind != auth.KindProxy:
		return p, s.refuse(rpc, p, codes.PermissionDenied, "%s may not use the certificate storage: only ingress proxies may", p)
	case p.ProxyRole != roleIngress:
		return p, s.refuse(rpc, p, codes.PermissionDenied, "%s is bound to role %q; only ingress proxies may use the certificate storage", p, p.ProxyRole)
	case p.ProxyNamespace == "" || strings.Contains(p.ProxyNamespace, "/"):
		return p, s.refuse(rpc, p, codes.PermissionDenied, "%s is bound to no usable namespace (%q)", p, p.ProxyNamespace)
	}
	return p, nil
}

// checkKey returns key without surrounding slashes, or why it is refused. Keys
// are certmagic's: "/"-separated paths of printable characters. Empty, "." and
// ".." elements are refused so that one key has one spelling; empty is allowed
// only for a directory (the root).
func checkKey(key string, directory bool) (string, error) {
	trimmed := strings.Trim(key, "/")
	switch {
	case trimmed == "" && directory:
		return "", nil
	case trimmed == "":
		return "", errors.New("key: empty")
	case len(trimmed) > MaxKeyLength:
		return "", fmt.Errorf("key: %d bytes long; at most %d", len(trimmed), MaxKeyLength)
	case !printable(trimmed):
		return "", fmt.Errorf("key %q: not printable UTF-8", trimmed)
	}
	for elem := range strings.SplitSeq(trimmed, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return "", fmt.Errorf("key %q: empty, \".\" and \"..\" path elements are not allowed", trimmed)
		}
	}
	return trimmed, nil
}

func checkLockName(name string) error {
	switch {
	case name == "":
		return errors.New("acquire: the lock name is empty")
	case len(name) > maxLockNameLen:
		return fmt.Errorf("acquire: the lock name is %d bytes long; at most %d", len(name), maxLockNameLen)
	case !printable(name):
		return fmt.Errorf("acquire: the lock name %q is not printable UTF-8", name)
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// storeError maps a certstorage failure to a gRPC status: a missing key is
// NotFound (the client turns it back into fs.ErrNotExist), a deadline is
// DeadlineExceeded, anything else Unavailable (the store did not answer, or
// holds a value certstorage did not write).
func storeError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.FromContextError(err).Err()
	default:
		return status.Error(codes.Unavailable, err.Error())
	}
}

// refuse counts and logs a refused call and returns its status.
func (s *Service) refuse(rpc string, p auth.Principal, code codes.Code, format string, args ...any) error {
	st := status.Newf(code, "certstore: "+format, args...)
	s.m.refused.WithLabelValues(rpc, reasonOf(code)).Inc()
	who := "unauthenticated"
	if p.Kind != "" {
		who = p.String()
	}
	s.log.Warn("certstore: call refused", "rpc", rpc, "principal", who, "code", code.String(), "reason", st.Message())
	return st.Err()
}
