// Package push is the control plane's side of config push (SM-DR5): it serves the
// ConfigPush stream, gives every proxy the part of the stored resources its
// identity scopes it to, as one state-of-the-world config with an opaque version,
// pushes a new version whenever the scope's content changes, and records each
// proxy's ACK or NACK as its status (in memory and, for every replica to read, in
// the store). README.md states the protocol and the scoping rules.
//
// It is not for: authenticating callers (the gRPC server's interceptors put the
// principal in the context), storing or validating resources on write (the admin
// API and package resources), or the proxy's side (gateway/cpclient).
package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/gateway/config"
)

// Options configure a Server. Every field documents its zero value.
type Options struct {
	// Index follows the stored resources. Required.
	Index *resources.Index
	// Store keeps the proxies' status records ("status/<node>", with a TTL) so that
	// every replica can answer Status. Nil: status is kept in memory only.
	Store store.Store
	// Logger receives connection, NACK and scoping events. Nil: slog.Default().
	Logger *slog.Logger
	// Registerer receives the push metrics. Nil: they are kept but not exported.
	Registerer prometheus.Registerer
	// Endpoints looks up a registry service's endpoints for clusters that name one.
	// Nil: such clusters are scoping errors.
	Endpoints EndpointLookup
	// EndpointsChanged signals that Endpoints may answer differently now; every
	// proxy's scope is recomputed. Nil: never.
	EndpointsChanged <-chan struct{}
	// EndpointsReady is closed once Endpoints knows every service (the registry's
	// Ready); no config is pushed before, lest a restarted control plane push
	// clusters without endpoints. Nil: Endpoints is ready at once.
	EndpointsReady <-chan struct{}
	// Authorize returns the caller of a stream. Nil: auth.FromContext, and a
	// stream without a principal is refused.
	Authorize func(ctx context.Context) (auth.Principal, error)
	// HelloTimeout bounds the wait for a stream's Hello. Zero: 10s.
	HelloTimeout time.Duration
	// StatusTTL is how long a status record outlives its last refresh in the
	// store; connected proxies' records are refreshed every third of it. Zero: 60s.
	StatusTTL time.Duration
}

// Server serves cpv1.ConfigPush. Make one with NewServer; register it on a gRPC
// server (with ServerOptions); stop it with Close before stopping that server.
type Server struct {
	cpv1.UnimplementedConfigPushServer

	opts    Options
	log     *slog.Logger
	m       *metrics
	records *statusWriter
	replica string

	ctx     context.Context
	cancel  context.CancelFunc
	workers sync.WaitGroup // follow, refreshStatus
	streams sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	cat        *catalog
	catChanged chan struct{} // closed and replaced when cat is
	gen        uint64
	conns      map[string]*proxyConn // by node
	connSeq    uint64

	scopeMu sync.Mutex
	scopes  map[identity]scopeVerdict // the last verdict per identity
}

var _ cpv1.ConfigPushServer = (*Server)(nil)

// scopeVerdict remembers the last version checked for an identity and what
// config.Validate said of it, so that every replica of a gateway (and every
// unchanged scope on every store change) is validated once.
type scopeVerdict struct {
	version string
	err     error
}

// NewServer starts following opts.Index and returns the server. Close stops it.
func NewServer(opts Options) (*Server, error) {
	if opts.Index == nil {
		return nil, errors.New("push: Options.Index is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HelloTimeout <= 0 {
		opts.HelloTimeout = 10 * time.Second
	}
	if opts.StatusTTL <= 0 {
		opts.StatusTTL = 60 * time.Second
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	var id [6]byte
	rand.Read(id[:])
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:       opts,
		log:        opts.Logger.With("component", "push"),
		m:          m,
		replica:    hex.EncodeToString(id[:]),
		ctx:        ctx,
		cancel:     cancel,
		catChanged: make(chan struct{}),
		conns:      map[string]*proxyConn{},
		scopes:     map[identity]scopeVerdict{},
	}
	s.records = newStatusWriter(opts.Store, opts.StatusTTL, s.log, s.liveRecord)
	s.records.start()
	s.workers.Add(2)
	go s.follow()
	go s.refreshStatus()
	return s, nil
}

// ServerOptions are the gRPC server options a control plane serving ConfigPush
// needs: keepalive pings both ways, so that a dead proxy shows as disconnected and
// a proxy (gateway/cpclient pings every 30 s) notices a dead control plane within
// about 40 s instead of being refused for pinging too often.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	}
}

// Close ends every stream (proxies keep serving what they run and reconnect),
// writes their last status records, and stops following the index.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.streams.Wait()
	s.workers.Wait()
	s.records.stop(2 * statusWriteTimeout)
}

// follow rebuilds the catalog after every index change and endpoints change, and
// offers every connected proxy its scope. Offers never block: a proxy's stream
// sends at its own pace, and only the newest offer waits for it.
func (s *Server) follow() {
	defer s.workers.Done()
	for _, ready := range []<-chan struct{}{s.opts.Index.Ready(), s.opts.EndpointsReady} {
		if ready == nil {
			continue
		}
		select {
		case <-ready:
		case <-s.ctx.Done():
			return
		}
	}
	endpointsChanged := s.opts.EndpointsChanged
	var prev *catalog
	var prevView *resources.View
	dirty := true
	for {
		view, changed := s.opts.Index.View()
		if dirty || view != prevView {
			prev = s.publish(prev, view)
			prevView, dirty = view, false
		}
		select {
		case <-changed:
		case _, ok := <-endpointsChanged:
			if !ok {
				endpointsChanged = nil // closed: no more changes will come
			}
			dirty = true
		case <-s.ctx.Done():
			return
		}
	}
}

// publish builds and installs the catalog of view, then offers it to every proxy.
func (s *Server) publish(prev *catalog, view *resources.View) *catalog {
	s.mu.Lock()
	s.gen++
	gen := s.gen
	s.mu.Unlock()
	c := buildCatalog(prev, view, gen)

	s.mu.Lock()
	s.cat = c
	close(s.catChanged)
	s.catChanged = make(chan struct{})
	conns := make([]*proxyConn, 0, len(s.conns))
	for _, conn := range s.conns {
		conns = append(conns, conn)
	}
	s.mu.Unlock()

	updates := map[identity]*update{}
	for _, conn := range conns {
		u := updates[conn.id]
		if u == nil {
			u = s.scopeFor(c, conn.id)
			updates[conn.id] = u
		}
		s.offer(conn, u)
	}
	// Forget the verdicts of identities no longer connected.
	s.scopeMu.Lock()
	for id := range s.scopes {
		if updates[id] == nil {
			delete(s.scopes, id)
		}
	}
	s.scopeMu.Unlock()
	// Set last, so that a reader who sees this revision knows every proxy has had
	// its offer.
	s.m.revision.Set(float64(c.revision))
	return c
}

// scopeFor renders and validates the scope of id in c.
func (s *Server) scopeFor(c *catalog, id identity) *update {
	r, set := render(c.scope(id), s.opts.Endpoints)
	s.scopeMu.Lock()
	prev, seen := s.scopes[id]
	s.scopeMu.Unlock()
	switch {
	case r.err == nil && seen && prev.version == r.version:
		r.err = prev.err // checked before, and counted then if it failed
		return &update{gen: c.gen, rendered: r}
	case r.err == nil:
		if err := config.Validate(set); err != nil {
			r.err = fmt.Errorf("scoped config %s of %s: %w", r.version, id, err)
		}
	case seen && prev.version == "" && prev.err != nil && prev.err.Error() == r.err.Error():
		return &update{gen: c.gen, rendered: r} // the same rendering error as before
	}
	s.scopeMu.Lock()
	// A new stream of the same identity may have judged the same rendering
	// meanwhile (scopeFor runs for the index and for each new stream): the
	// verdict is counted and logged once.
	again, raced := s.scopes[id]
	raced = raced && again.version == r.version && (again.err == nil) == (r.err == nil)
	s.scopes[id] = scopeVerdict{version: r.version, err: r.err}
	s.scopeMu.Unlock()
	if r.err != nil && !raced {
		s.m.scopeErrors.Inc()
		s.log.Error("scoped config is invalid and is not sent; the proxy keeps what it runs",
			"proxy", id.String(), "version", r.version, "revision", c.revision, "err", r.err)
	}
	return &update{gen: c.gen, rendered: r}
}

func (s *Server) offer(conn *proxyConn, u *update) {
	if conn.offer(u) {
		s.records.mark(conn.node)
	}
}

// liveRecord is the record of a proxy connected to this replica.
func (s *Server) liveRecord(node string, now time.Time) (record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conns[node]
	if c == nil {
		return record{}, false
	}
	return c.record(now), true
}

// refreshStatus rewrites the records of connected proxies every third of the TTL,
// so that they lapse only when their proxy (or this replica) is gone.
func (s *Server) refreshStatus() {
	defer s.workers.Done()
	t := time.NewTicker(s.opts.StatusTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.mu.Lock()
			nodes := make([]string, 0, len(s.conns))
			for n := range s.conns {
				nodes = append(nodes, n)
			}
			s.mu.Unlock()
			for _, n := range nodes {
				s.records.mark(n)
			}
		case <-s.ctx.Done():
			return
		}
	}
}
