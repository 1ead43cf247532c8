package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// sessionTTLSeconds is the lease TTL of a store's session: how long the locks and
// leaderships of a process that stopped (or was cut off) outlive it. Shorter
// hands work over faster; longer survives longer stalls and etcd leader changes.
const sessionTTLSeconds = 10

// Lock takes the named lock: first among callers in this process, then, through
// an etcd mutex bound to the store's session lease, among processes. The
// in-process step is needed because every caller here shares one lease, and etcd's
// mutex treats two holders of one lease as the same owner.
//
// The lock ends with the session: if this process stalls or is cut off for longer
// than the lease TTL (10 s), another process may take it although unlock was never
// called. Work that must never run twice should use Campaign and watch Lost.
func (s *Etcd) Lock(ctx context.Context, name string) (func() error, error) {
	if name == "" {
		return nil, errors.New("store: lock: empty name")
	}
	releaseLocal, err := s.locks.acquire(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("store: lock %q: %w", name, err)
	}
	session, err := s.sessions.get(ctx)
	if err != nil {
		releaseLocal()
		return nil, fmt.Errorf("store: lock %q: %w", name, err)
	}
	prefix := s.lockPrefix + url.PathEscape(name)
	mutex := concurrency.NewMutex(session, prefix)
	if err := mutex.Lock(ctx); err != nil {
		// A cancelled attempt can leave its waiting key behind (the put applied but
		// the answer was lost); it would block every later caller until the session
		// ends, so delete it while still holding the in-process lock.
		s.deleteQuietly(sessionKey(prefix, session))
		releaseLocal()
		return nil, fmt.Errorf("store: lock %q: %w", name, err)
	}
	var (
		once      sync.Once
		unlockErr error
		unlocked  = make(chan struct{})
	)
	unlock := func() error {
		once.Do(func() {
			defer close(unlocked)
			defer releaseLocal()
			if isDone(session.Done()) {
				return // the lease, and with it the lock, is already gone
			}
			ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
			defer cancel()
			if err := mutex.Unlock(ctx); err != nil {
				unlockErr = fmt.Errorf("store: unlock %q: %w", name, err)
			}
		})
		return unlockErr
	}
	// A lock lost with its session is free for other processes at once; free it for
	// this process's other callers too, rather than until unlock is called.
	go func() {
		select {
		case <-session.Done():
			_ = unlock()
		case <-unlocked:
		}
	}()
	return unlock, nil
}

// Campaign waits to become leader of election name. Candidates of one process are
// queued in-process first, for the same reason as in Lock.
func (s *Etcd) Campaign(ctx context.Context, name, candidate string) (Leadership, error) {
	if name == "" {
		return nil, errors.New("store: campaign: empty election name")
	}
	releaseLocal, err := s.elections.acquire(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("store: campaign %q: %w", name, err)
	}
	session, err := s.sessions.get(ctx)
	if err != nil {
		releaseLocal()
		return nil, fmt.Errorf("store: campaign %q: %w", name, err)
	}
	prefix := s.electionPrefix + url.PathEscape(name)
	election := concurrency.NewElection(session, prefix)
	if err := election.Campaign(ctx, candidate); err != nil {
		s.deleteQuietly(sessionKey(prefix, session))
		releaseLocal()
		return nil, fmt.Errorf("store: campaign %q: %w", name, err)
	}
	monitorCtx, stop := context.WithCancel(session.Ctx())
	l := &leadership{
		client:       s.client,
		name:         name,
		election:     election,
		key:          election.Key(),
		createRev:    election.Rev(),
		lost:         make(chan struct{}),
		stop:         stop,
		releaseLocal: releaseLocal,
	}
	go l.monitor(monitorCtx)
	return l, nil
}

// leadership ends (Lost closes) on Resign, when the session's lease ends (expiry,
// store closed) or when the leader key is seen deleted (an operator's hand, or a
// lease revoked elsewhere).
type leadership struct {
	client       *clientv3.Client
	name         string
	election     *concurrency.Election
	key          string
	createRev    int64
	lost         chan struct{}
	stop         context.CancelFunc
	releaseLocal func()
	endOnce      sync.Once
}

var _ Leadership = (*leadership)(nil)

func (l *leadership) Lost() <-chan struct{} { return l.lost }

func (l *leadership) Resign(ctx context.Context) error {
	select {
	case <-l.lost:
		return nil
	default:
	}
	if err := l.election.Resign(ctx); err != nil {
		return fmt.Errorf("store: resign %q: %w", l.name, err)
	}
	l.end()
	return nil
}

func (l *leadership) end() {
	l.endOnce.Do(func() {
		l.stop()
		close(l.lost)
		l.releaseLocal()
	})
}

// monitor watches the leader key until it is deleted or ctx (a child of the
// session's) ends. A watch that breaks for another reason (compaction, a member
// lost) is re-established after re-reading the key.
func (l *leadership) monitor(ctx context.Context) {
	defer l.end()
	const retryEvery = 500 * time.Millisecond
	for ctx.Err() == nil {
		if deleted, err := l.watchUntilDeleted(ctx); deleted || ctx.Err() != nil {
			return
		} else if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryEvery):
			}
		}
	}
}

func (l *leadership) watchUntilDeleted(ctx context.Context) (bool, error) {
	resp, err := l.client.Get(ctx, l.key)
	if err != nil {
		return false, err
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != l.createRev {
		return true, nil
	}
	for wr := range l.client.Watch(ctx, l.key, clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return false, err
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return true, nil
			}
		}
	}
	return false, errors.New("watch ended")
}

// deleteQuietly removes a key left by a failed lock or campaign attempt.
func (s *Etcd) deleteQuietly(key string) {
	ctx, cancel := context.WithTimeout(s.ctx, cleanupTimeout)
	defer cancel()
	if _, err := s.client.Delete(ctx, key); err != nil {
		s.logger.Warn("store: removing a key left by a failed attempt", "key", key, "error", err)
	}
}

// sessionKey is the key etcd's mutex and election write for a session.
func sessionKey(prefix string, session *concurrency.Session) string {
	return fmt.Sprintf("%s/%x", prefix, session.Lease())
}

// sessionCache holds a store's one etcd session (a lease kept alive), made on first
// use and made again once it has ended (lease expired after a long partition).
type sessionCache struct {
	client *clientv3.Client
	ctx    context.Context // the store's lifetime

	mu      sync.Mutex
	current *concurrency.Session
	closed  bool
}

func (c *sessionCache) get(ctx context.Context) (*concurrency.Session, error) {
	if cur, err := c.live(); cur != nil || err != nil {
		return cur, err
	}
	// Grant with the caller's ctx, so a cluster that does not answer does not block
	// the caller beyond it; the session's keep-alive then lives with the store.
	lease, err := c.client.Grant(ctx, sessionTTLSeconds)
	if err != nil {
		return nil, fmt.Errorf("granting the session lease: %w", err)
	}
	session, err := concurrency.NewSession(c.client,
		concurrency.WithLease(lease.ID),
		concurrency.WithTTL(sessionTTLSeconds),
		concurrency.WithContext(c.ctx))
	if err != nil {
		c.revoke(lease.ID)
		return nil, fmt.Errorf("keeping the session lease alive: %w", err)
	}
	c.mu.Lock()
	cur, closed := c.current, c.closed
	keep := !closed && (cur == nil || isDone(cur.Done()))
	if keep {
		c.current = session
	}
	c.mu.Unlock()
	if keep {
		return session, nil
	}
	// Closed meanwhile, or another caller made a session first: drop ours.
	session.Orphan()
	c.revoke(lease.ID)
	if closed {
		return nil, errStoreClosed
	}
	return cur, nil
}

func (c *sessionCache) live() (*concurrency.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errStoreClosed
	}
	if c.current != nil && !isDone(c.current.Done()) {
		return c.current, nil
	}
	return nil, nil
}

// close ends the session and revokes its lease, which deletes every lock and
// election key it holds at once.
func (c *sessionCache) close() error {
	c.mu.Lock()
	c.closed = true
	cur := c.current
	c.current = nil
	c.mu.Unlock()
	if cur == nil {
		return nil
	}
	cur.Orphan()
	return c.revoke(cur.Lease())
}

func (c *sessionCache) revoke(id clientv3.LeaseID) error {
	// Not the store's ctx: close cancels that before the client is closed, and the
	// revoke must still go out.
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_, err := c.client.Revoke(ctx, id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return nil
	}
	return err
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// localLocks is a set of named, context-aware mutexes for callers in one process.
type localLocks struct {
	mu     sync.Mutex
	byName map[string]*localLock
}

type localLock struct {
	held chan struct{} // capacity 1: full while held
	refs int           // holders and waiters; the entry is dropped at zero
}

// acquire blocks until name is free or ctx is done; release must be called once.
func (l *localLocks) acquire(ctx context.Context, name string) (release func(), err error) {
	l.mu.Lock()
	if l.byName == nil {
		l.byName = make(map[string]*localLock)
	}
	lock := l.byName[name]
	if lock == nil {
		lock = &localLock{held: make(chan struct{}, 1)}
		l.byName[name] = lock
	}
	lock.refs++
	l.mu.Unlock()

	select {
	case lock.held <- struct{}{}:
		return func() {
			<-lock.held
			l.unref(name, lock)
		}, nil
	case <-ctx.Done():
		l.unref(name, lock)
		return nil, ctx.Err()
	}
}

func (l *localLocks) unref(name string, lock *localLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lock.refs--
	if lock.refs == 0 {
		delete(l.byName, name)
	}
}
