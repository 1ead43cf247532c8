// Package snapshot compiles a validated config.Set into an immutable Snapshot (route
// tables, filter chains, upstream clusters) and serves requests on it.
//
// A Snapshot never changes after Compile. The gateway swaps whole snapshots
// atomically; a request keeps the snapshot it started on until it ends, and a
// retired snapshot closes what the next one did not carry over once its last
// request is done (SM-DR5).
//
// It is not for reading files (gateway/config) or owning sockets (gateway/listener).
package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/observe"
	"github.com/portcullis/portcullis/gateway/proxy"
	"github.com/portcullis/portcullis/gateway/upstream"
)

// Deps are the long-lived services a snapshot uses.
type Deps struct {
	Logger   *slog.Logger
	Observer *observe.Observer
	// Role is "ingress", "egress" or "sidecar", for logs.
	Role string
	// DataDir is the proxy's local state directory, passed on to filters.
	DataDir string
	// FromControlPlane says the set was pushed by the control plane, which fills
	// in the endpoints of every Cluster with registry discovery (none: no healthy
	// endpoint, requests get 503). False for config read from files, where such a
	// Cluster is refused: nothing would ever fill its endpoints in.
	FromControlPlane bool
}

// Snapshot is one compiled config. Safe for concurrent use; immutable.
type Snapshot struct {
	// Version is an opaque digest of the config it was compiled from.
	Version string
	// Set is the config it was compiled from (read-only).
	Set *config.Set
	// Listeners are the listener specs by "namespace/name".
	Listeners map[string]config.ListenerSpec
	// Telemetry is the telemetry spec (zero value when none was given).
	Telemetry config.TelemetrySpec

	handlers  map[string]*listenerHandler
	upstreams map[string]*upstreamEntry
	specs     map[string]config.ClusterSpec
	closers   []io.Closer
	deps      Deps
	stats     *observe.Lease // the metric handles it uses; nil without an Observer

	inflight  atomic.Int64
	retired   atomic.Bool
	next      atomic.Pointer[Snapshot]
	closeOnce sync.Once
}

type upstreamEntry struct {
	digest string
	up     *proxy.Upstream
}

// Digest returns the opaque version for config bytes.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

func specDigest(v any) string {
	b, _ := json.Marshal(v)
	return Digest(b)
}

// Start begins the background work of the upstreams that are new in s (health
// checks, DNS). Call it once, after Compile succeeded and before swapping s in.
func (s *Snapshot) Start(prev *Snapshot) {
	for k, e := range s.upstreams {
		if prev != nil {
			if pe, ok := prev.upstreams[k]; ok && pe.up == e.up {
				continue
			}
		}
		if len(s.specs[k].Endpoints) == 0 {
			// DNS discovery: warm the cluster before it takes traffic, so the first
			// requests do not find it empty. A failed lookup is retried by Start.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := e.up.Refresh(ctx); err != nil {
				s.deps.Logger.Warn("DNS lookup for a new cluster failed; retrying in the background", "cluster", k, "err", err)
			}
			cancel()
		}
		e.up.Start()
	}
}

// Discard closes what a snapshot that will never serve made, keeping what it shares
// with keep (the running snapshot). For a compiled snapshot that was refused.
func (s *Snapshot) Discard(keep *Snapshot) {
	s.closeExcept(keep)
}

// Retire marks s as replaced by next. It is closed (upstreams not carried into next,
// filters) once its in-flight requests have finished.
func (s *Snapshot) Retire(next *Snapshot) {
	s.next.Store(next)
	s.retired.Store(true)
	if s.inflight.Load() == 0 {
		s.close()
	}
}

func (s *Snapshot) acquire() { s.inflight.Add(1) }

func (s *Snapshot) release() {
	if s.inflight.Add(-1) == 0 && s.retired.Load() {
		s.close()
	}
}

func (s *Snapshot) close() { s.closeOnce.Do(func() { s.closeExcept(s.next.Load()) }) }

func (s *Snapshot) closeExcept(keep *Snapshot) {
	// Filters first: they may still use the upstreams (a mirror's copies in flight).
	for _, c := range s.closers {
		c.Close()
	}
	for k, e := range s.upstreams {
		if keep != nil {
			if ke, ok := keep.upstreams[k]; ok && ke.up == e.up {
				continue
			}
		}
		e.up.Close()
	}
	// Last, once nothing records into them: the metric series of routes and
	// clusters that no other snapshot holds (keep took its own) are deleted.
	s.stats.Release()
}

// Close closes everything the snapshot holds (at shutdown).
func (s *Snapshot) Close() { s.closeOnce.Do(func() { s.closeExcept(nil) }) }

// Upstreams reports the state of every cluster, for the admin /config page.
func (s *Snapshot) Upstreams() map[string]any {
	out := make(map[string]any, len(s.upstreams))
	for k, e := range s.upstreams {
		out[k] = e.up.Endpoints()
	}
	return out
}

// Serve handles one request of the named listener on s. The caller holds s
// (Acquire) for the duration.
func (s *Snapshot) Serve(listener string, w http.ResponseWriter, r *http.Request) {
	h := s.handlers[listener]
	if h == nil {
		// The listener was removed by this snapshot and its socket is draining.
		writeError(w, r, http.StatusServiceUnavailable, "listener_removed")
		return
	}
	h.serve(w, r)
}

// Acquire marks a request in flight on s; Release ends it. A retired snapshot is
// closed when the last request releases it.
func (s *Snapshot) Acquire() { s.acquire() }

// Release ends a request started with Acquire.
func (s *Snapshot) Release() { s.release() }

// Clusters returns the snapshot's clusters by "namespace/name" (read-only).
func (s *Snapshot) Clusters() map[string]*upstream.Cluster {
	out := make(map[string]*upstream.Cluster, len(s.upstreams))
	for k, e := range s.upstreams {
		out[k] = e.up.Cluster
	}
	return out
}

// OpenTunnels returns the upgraded connections (WebSocket and the like) open
// now to each of the snapshot's clusters, by "namespace/name".
func (s *Snapshot) OpenTunnels() map[string]int64 {
	out := make(map[string]int64, len(s.upstreams))
	for k, e := range s.upstreams {
		out[k] = e.up.OpenTunnels()
	}
	return out
}
