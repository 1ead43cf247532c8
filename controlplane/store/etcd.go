package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

// DefaultPrefix is the etcd key prefix everything of this store lives under, so an
// etcd cluster shared with other users is not polluted: values under
// DefaultPrefix+"data/", locks under "locks/", elections under "elections/".
const DefaultPrefix = "/portcullis/"

const (
	defaultDialTimeout = 5 * time.Second
	// defaultListPageSize bounds one range response; a List larger than this is
	// read in pages, all at the revision of the first page.
	defaultListPageSize = 1000
	// cleanupTimeout bounds best-effort clean-up (unlock, revoke, resign) that must
	// not inherit an already cancelled ctx.
	cleanupTimeout = 5 * time.Second
)

// errStoreClosed is returned by every operation on a closed store.
var errStoreClosed = errors.New("the store is closed")

// ClusterConfig says how to reach an external etcd cluster.
type ClusterConfig struct {
	// Endpoints are the members' client URLs ("https://10.0.0.1:2379" or
	// "host:port"); the client balances over them and fails over when one is lost.
	Endpoints []string
	// TLS, when set, is used for every endpoint (client certificate and CA).
	TLS *tls.Config
	// Username and Password authenticate with etcd's auth, when enabled.
	Username string
	Password string
	// DialTimeout bounds connecting (default 5 s).
	DialTimeout time.Duration
	// Prefix replaces DefaultPrefix; it must start and end with "/". Two control
	// planes sharing one etcd cluster need different prefixes.
	Prefix string
	// Logger receives the etcd client's warnings; nil discards them.
	Logger *slog.Logger
}

// Etcd is the Store over etcd's v3 API, either an in-process member
// (OpenEmbedded) or a client of an external cluster (OpenCluster).
type Etcd struct {
	client    *clientv3.Client
	endpoints []string
	member    *embed.Etcd // nil for an external cluster
	logger    *slog.Logger

	dataPrefix     string
	lockPrefix     string
	electionPrefix string
	listPageSize   int64

	// ctx lives until Close; it bounds the session's keep-alive and watches of
	// leadership, never a caller's operation.
	ctx    context.Context
	cancel context.CancelFunc

	sessions  sessionCache
	locks     localLocks
	elections localLocks

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Etcd)(nil)

// OpenCluster connects to an external etcd cluster and checks that it answers a
// linearizable read (so a quorum is reachable) before returning.
func OpenCluster(ctx context.Context, cfg ClusterConfig) (*Etcd, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("store: ClusterConfig.Endpoints: at least one endpoint is required")
	}
	for i, ep := range cfg.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return nil, fmt.Errorf("store: ClusterConfig.Endpoints[%d]: empty endpoint", i)
		}
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, errors.New("store: ClusterConfig.Username and ClusterConfig.Password must be set together")
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") || len(prefix) < 2 {
		return nil, fmt.Errorf("store: ClusterConfig.Prefix %q: must start and end with \"/\"", prefix)
	}
	dialTimeout := cfg.DialTimeout
	if dialTimeout <= 0 {
		dialTimeout = defaultDialTimeout
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: dialTimeout,
		// Keep-alives notice a member that vanished without closing its
		// connections, so requests and watches move to another endpoint.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		TLS:                  cfg.TLS,
		Username:             cfg.Username,
		Password:             cfg.Password,
		Logger:               newZapLogger(cfg.Logger, zapcore.WarnLevel),
	})
	if err != nil {
		return nil, fmt.Errorf("store: connecting to etcd %v: %w", cfg.Endpoints, err)
	}
	s := newEtcd(client, cfg.Endpoints, prefix, cfg.Logger)
	pingCtx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if _, err := client.Get(pingCtx, s.dataPrefix, clientv3.WithCountOnly()); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("store: etcd %v did not answer a read: %w", cfg.Endpoints, err)
	}
	return s, nil
}

func newEtcd(client *clientv3.Client, endpoints []string, prefix string, logger *slog.Logger) *Etcd {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Etcd{
		client:         client,
		endpoints:      append([]string(nil), endpoints...),
		logger:         logger,
		dataPrefix:     prefix + "data/",
		lockPrefix:     prefix + "locks/",
		electionPrefix: prefix + "elections/",
		listPageSize:   defaultListPageSize,
		ctx:            ctx,
		cancel:         cancel,
	}
	s.sessions.client = client
	s.sessions.ctx = ctx
	return s
}

// Endpoints returns the client URLs this store talks to: an embedded member's own
// listener, or the cluster endpoints it was opened with. Another process (or a
// test) can pass them to OpenCluster to share an embedded member.
func (s *Etcd) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Get returns one key, or ErrNotFound.
func (s *Etcd) Get(ctx context.Context, key string) (KV, error) {
	if err := errors.Join(s.checkOpen(), checkKey(key)); err != nil {
		return KV{}, fmt.Errorf("store: get %q: %w", key, err)
	}
	resp, err := s.client.Get(ctx, s.dataPrefix+key)
	if err != nil {
		return KV{}, fmt.Errorf("store: get %q: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return KV{}, fmt.Errorf("store: get %q: %w", key, ErrNotFound)
	}
	return s.toKV(resp.Kvs[0]), nil
}

// List returns every key starting with prefix, sorted, read at one revision. A
// large listing is read in pages pinned to the first page's revision, so it is
// still one snapshot.
func (s *Etcd) List(ctx context.Context, prefix string) ([]KV, int64, error) {
	if err := s.checkOpen(); err != nil {
		return nil, 0, fmt.Errorf("store: list %q: %w", prefix, err)
	}
	full := s.dataPrefix + prefix
	end := clientv3.GetPrefixRangeEnd(full)
	var (
		out []KV
		rev int64
	)
	from := full
	for page := 0; ; page++ {
		opts := []clientv3.OpOption{
			clientv3.WithRange(end),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend),
			clientv3.WithLimit(s.listPageSize),
		}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.client.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, fmt.Errorf("store: list %q (page %d): %w", prefix, page, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			out = append(out, s.toKV(kv))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, rev, nil
		}
		// The next page starts just after the last key read.
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Put writes key if its current revision is expect; see Store.Put.
func (s *Etcd) Put(ctx context.Context, key string, value []byte, expect int64) (int64, error) {
	if err := errors.Join(s.checkOpen(), checkKey(key)); err != nil {
		return 0, fmt.Errorf("store: put %q: %w", key, err)
	}
	full := s.dataPrefix + key
	if expect == Any {
		resp, err := s.client.Put(ctx, full, string(value))
		if err != nil {
			return 0, fmt.Errorf("store: put %q: %w", key, err)
		}
		return resp.Header.Revision, nil
	}
	var cond clientv3.Cmp
	switch {
	case expect == MustNotExist:
		cond = clientv3.Compare(clientv3.CreateRevision(full), "=", 0)
	case expect > 0:
		cond = clientv3.Compare(clientv3.ModRevision(full), "=", expect)
	default:
		return 0, fmt.Errorf("store: put %q: expected revision %d is neither a revision, MustNotExist nor Any", key, expect)
	}
	resp, err := s.client.Txn(ctx).If(cond).Then(clientv3.OpPut(full, string(value))).Commit()
	if err != nil {
		return 0, fmt.Errorf("store: put %q: %w", key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("store: put %q expecting %s: %w", key, describeExpect(expect), ErrConflict)
	}
	return resp.Header.Revision, nil
}

// PutWithTTL writes key unconditionally, bound to a lease of ttl granted for this
// write alone. A lease per write (rather than one shared lease per TTL) is what
// gives "ttl after its last write": a shared lease would expire every key on it at
// once, or, kept alive, never. The previous write's lease expires on its own,
// holding no key by then. etcd rounds ttl up to whole seconds and raises it to its
// minimum lease TTL (about 2 s with default timings).
func (s *Etcd) PutWithTTL(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error) {
	if err := errors.Join(s.checkOpen(), checkKey(key)); err != nil {
		return 0, fmt.Errorf("store: put with ttl %q: %w", key, err)
	}
	if ttl <= 0 {
		return 0, fmt.Errorf("store: put %q: ttl %v must be positive", key, ttl)
	}
	seconds := int64(math.Ceil(ttl.Seconds()))
	lease, err := s.client.Grant(ctx, seconds)
	if err != nil {
		return 0, fmt.Errorf("store: put %q: granting a %ds lease: %w", key, seconds, err)
	}
	resp, err := s.client.Put(ctx, s.dataPrefix+key, string(value), clientv3.WithLease(lease.ID))
	if err != nil {
		s.revokeQuietly(lease.ID)
		return 0, fmt.Errorf("store: put %q with ttl: %w", key, err)
	}
	return resp.Header.Revision, nil
}

// Delete removes key if its current revision is expect (or Any).
func (s *Etcd) Delete(ctx context.Context, key string, expect int64) error {
	if err := errors.Join(s.checkOpen(), checkKey(key)); err != nil {
		return fmt.Errorf("store: delete %q: %w", key, err)
	}
	full := s.dataPrefix + key
	switch {
	case expect == Any:
		resp, err := s.client.Delete(ctx, full)
		if err != nil {
			return fmt.Errorf("store: delete %q: %w", key, err)
		}
		if resp.Deleted == 0 {
			return fmt.Errorf("store: delete %q: %w", key, ErrNotFound)
		}
		return nil
	case expect > 0:
	default:
		return fmt.Errorf("store: delete %q: expected revision %d is neither a revision nor Any", key, expect)
	}
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(full), "=", expect)).
		Then(clientv3.OpDelete(full)).
		Else(clientv3.OpGet(full, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return fmt.Errorf("store: delete %q: %w", key, err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().GetCount() == 0 {
			return fmt.Errorf("store: delete %q: %w", key, ErrNotFound)
		}
		return fmt.Errorf("store: delete %q expecting %s: %w", key, describeExpect(expect), ErrConflict)
	}
	return nil
}

// Watch streams changes under prefix after afterRevision. The watch requires the
// member it is attached to to have a raft leader: a member cut off from its quorum
// ends the watch with an error (after a few election timeouts) instead of going
// silent, and the caller lists again. Losing a member's connection does not end it:
// the client resumes the watch on another endpoint from the last revision seen.
func (s *Etcd) Watch(ctx context.Context, prefix string, afterRevision int64) <-chan WatchResponse {
	if err := s.checkOpen(); err != nil {
		closed := make(chan WatchResponse, 1)
		closed <- WatchResponse{Err: fmt.Errorf("store: watch %q: %w", prefix, err)}
		close(closed)
		return closed
	}
	out := make(chan WatchResponse)
	if afterRevision < 0 {
		afterRevision = 0
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	upstream := s.client.Watch(wctx, s.dataPrefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(afterRevision+1))
	go func() {
		defer close(out)
		defer cancel()
		send := func(r WatchResponse) bool {
			select {
			case out <- r:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for resp := range upstream {
			if err := resp.Err(); err != nil {
				send(WatchResponse{Revision: resp.Header.Revision, Err: fmt.Errorf("store: watch %q after revision %d: %w", prefix, afterRevision, err)})
				return
			}
			if len(resp.Events) == 0 {
				continue // progress notification
			}
			for _, r := range s.toWatchResponses(resp) {
				if !send(r) {
					return
				}
			}
		}
		// The upstream channel closes without an error when ctx ends (the caller's
		// choice) or when the client is closed (which the caller must hear about).
		if ctx.Err() == nil {
			send(WatchResponse{Err: fmt.Errorf("store: watch %q: the store was closed", prefix)})
		}
	}()
	return out
}

// toWatchResponses converts one etcd watch response. etcd batches events of
// several revisions into one response; a WatchResponse holds the events of one
// revision (one transaction), so they are split by revision, in order.
func (s *Etcd) toWatchResponses(resp clientv3.WatchResponse) []WatchResponse {
	var out []WatchResponse
	for _, ev := range resp.Events {
		e := Event{Type: EventPut, KV: s.toKV(ev.Kv)}
		if ev.Type == mvccpb.DELETE {
			e.Type = EventDelete
			e.KV.Value = nil
		}
		// A delete's tombstone carries the deleting revision as its ModRevision.
		rev := ev.Kv.ModRevision
		if n := len(out); n > 0 && out[n-1].Revision == rev {
			out[n-1].Events = append(out[n-1].Events, e)
			continue
		}
		out = append(out, WatchResponse{Revision: rev, Events: []Event{e}})
	}
	return out
}

// Snapshot streams a consistent copy of the etcd backend (a bbolt database,
// followed by etcd's integrity hash) from one member to w: the backup that
// `etcdutl snapshot restore` restores.
func (s *Etcd) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("store: snapshot: %w", err)
	}
	rc, err := s.client.Snapshot(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: snapshot: %w", err)
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	if err != nil {
		return n, fmt.Errorf("store: snapshot after %d bytes: %w", n, err)
	}
	return n, nil
}

// Close releases the store's lease (so its locks and leaderships end at once rather
// than when the lease expires), closes the client and stops an embedded member.
// It is safe to call more than once.
func (s *Etcd) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if err := s.sessions.close(); err != nil {
			errs = append(errs, fmt.Errorf("store: revoking the session lease: %w", err))
		}
		s.cancel()
		if err := s.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("store: closing the etcd client: %w", err))
		}
		if s.member != nil {
			s.member.Close()
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Etcd) toKV(kv *mvccpb.KeyValue) KV {
	return KV{
		Key:         strings.TrimPrefix(string(kv.Key), s.dataPrefix),
		Value:       kv.Value,
		ModRevision: kv.ModRevision,
	}
}

func (s *Etcd) revokeQuietly(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(s.ctx, cleanupTimeout)
	defer cancel()
	if _, err := s.client.Revoke(ctx, id); err != nil {
		s.logger.Debug("store: revoking an unused lease", "lease", fmt.Sprintf("%x", int64(id)), "error", err)
	}
}

// checkOpen fails fast on a closed store: the etcd client would otherwise retry
// with backoff for seconds before reporting that its connection is closing.
func (s *Etcd) checkOpen() error {
	if s.ctx.Err() != nil {
		return errStoreClosed
	}
	return nil
}

func checkKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	return nil
}

func describeExpect(expect int64) string {
	if expect == MustNotExist {
		return "no key"
	}
	return fmt.Sprintf("revision %d", expect)
}
