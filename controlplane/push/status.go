package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/store"
)

// StatusPrefix is the store prefix of proxy status records ("status/<node>").
const StatusPrefix = "status/"

// record is what the control plane knows of one proxy, as kept in the store (JSON).
type record struct {
	Node         string `json:"node"`
	Role         string `json:"role"`
	Namespace    string `json:"namespace"`
	Name         string `json:"name"`
	Connected    bool   `json:"connected"`
	Running      string `json:"running,omitempty"`
	Sent         string `json:"sent,omitempty"`
	Refused      string `json:"refused,omitempty"`
	RefusedError string `json:"refusedError,omitempty"`
	// ScopeError is why the proxy's current scoped config was not sent to it.
	ScopeError string `json:"scopeError,omitempty"`
	Build      string `json:"build,omitempty"`
	LastSeen   int64  `json:"lastSeen"`
	// Conn names the stream (replica and connection) that wrote the record, so a
	// replica that loses a proxy does not mark it disconnected after another
	// replica took it over.
	Conn string `json:"conn"`
}

// scopeErrorPrefix marks, in ProxyStatus.refused_error, a config the control plane
// refused to send (the proxy never saw it), as opposed to a NACK from the proxy.
const scopeErrorPrefix = "not sent: the scoped config is invalid: "

// proto renders the record for the admin API. ProxyStatus has no field for a
// scoping error, so one is reported as a refusal with scopeErrorPrefix.
func (r record) proto() *cpv1.ProxyStatus {
	p := &cpv1.ProxyStatus{
		Node: r.Node, Role: r.Role, Namespace: r.Namespace, Name: r.Name, Connected: r.Connected,
		RunningVersion: r.Running, SentVersion: r.Sent, RefusedVersion: r.Refused, RefusedError: r.RefusedError,
		LastSeenUnix: r.LastSeen,
	}
	if r.ScopeError != "" {
		p.RefusedVersion = ""
		p.RefusedError = scopeErrorPrefix + r.ScopeError
	}
	return p
}

// Status returns every proxy the control plane knows of, sorted by node: the
// records in the store (written by every replica, each lapsing a TTL after its
// proxy was last seen), with this replica's own connections as of now. Without a
// store, only this replica's connections.
func (s *Server) Status(ctx context.Context) ([]*cpv1.ProxyStatus, error) {
	byNode := map[string]record{}
	if s.opts.Store != nil {
		kvs, _, err := s.opts.Store.List(ctx, StatusPrefix)
		if err != nil {
			return nil, fmt.Errorf("push: reading proxy status: %w", err)
		}
		for _, kv := range kvs {
			var r record
			if err := json.Unmarshal(kv.Value, &r); err != nil || r.Node != strings.TrimPrefix(kv.Key, StatusPrefix) {
				s.log.Warn("ignoring a malformed proxy status record", "key", kv.Key, "err", err)
				continue
			}
			byNode[r.Node] = r
		}
	}
	now := time.Now()
	s.mu.Lock()
	for node, c := range s.conns {
		byNode[node] = c.record(now)
	}
	s.mu.Unlock()
	out := make([]*cpv1.ProxyStatus, 0, len(byNode))
	for _, r := range byNode {
		out = append(out, r.proto())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}

// statusWriter copies status records to the store off the streams' paths: nodes
// are queued once however often they change, and a few workers write the latest
// record of each, one write per node at a time (so an older record never lands
// after a newer one). A store that is slow or away delays status, never config.
type statusWriter struct {
	st   store.Store
	ttl  time.Duration
	log  *slog.Logger
	live func(node string, now time.Time) (record, bool)

	ctx    context.Context // ends the workers (after stop has flushed)
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	queue      []string
	queued     map[string]bool
	inflight   map[string]bool
	again      map[string]bool   // marked while in flight: write once more after
	finals     map[string]record // disconnected proxies' last records, not yet written
	wake       chan struct{}
	lastErr    time.Time
	suppressed int
}

const (
	statusWorkers      = 4
	statusWriteTimeout = 5 * time.Second
)

func newStatusWriter(st store.Store, ttl time.Duration, log *slog.Logger, live func(string, time.Time) (record, bool)) *statusWriter {
	ctx, cancel := context.WithCancel(context.Background())
	return &statusWriter{st: st, ttl: ttl, log: log, live: live, ctx: ctx, cancel: cancel,
		queued: map[string]bool{}, inflight: map[string]bool{}, again: map[string]bool{}, finals: map[string]record{},
		wake: make(chan struct{}, 1)}
}

// start runs the workers; without a store there is nothing to write.
func (w *statusWriter) start() {
	if w.st == nil {
		return
	}
	for range statusWorkers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run()
		}()
	}
}

// stop waits until everything queued is written (at most timeout), then stops
// the workers.
func (w *statusWriter) stop(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for w.st != nil && !w.idle() && time.Now().Before(deadline) {
		w.kick()
		time.Sleep(5 * time.Millisecond) // shutdown only: waiting on the workers' last writes
	}
	w.cancel()
	w.wg.Wait()
}

func (w *statusWriter) idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue) == 0 && len(w.inflight) == 0
}

func (w *statusWriter) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// mark queues node's record for writing.
func (w *statusWriter) mark(node string) {
	if w.st == nil {
		return
	}
	w.mu.Lock()
	w.enqueue(node)
	w.mu.Unlock()
	w.kick()
}

func (w *statusWriter) enqueue(node string) {
	if !w.queued[node] {
		w.queued[node] = true
		w.queue = append(w.queue, node)
	}
}

// final queues the last record of a proxy whose stream ended.
func (w *statusWriter) final(r record) {
	if w.st == nil {
		return
	}
	w.mu.Lock()
	w.finals[r.Node] = r
	w.mu.Unlock()
	w.mark(r.Node)
}

// pop takes the next node that no worker is writing.
func (w *statusWriter) pop() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) > 0 {
		node := w.queue[0]
		w.queue[0] = ""
		w.queue = w.queue[1:]
		delete(w.queued, node)
		if w.inflight[node] {
			w.again[node] = true
			continue
		}
		w.inflight[node] = true
		return node, true
	}
	return "", false
}

func (w *statusWriter) done(node string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.inflight, node)
	if w.again[node] {
		delete(w.again, node)
		w.enqueue(node)
	}
}

func (w *statusWriter) run() {
	for {
		for node, ok := w.pop(); ok; node, ok = w.pop() {
			w.write(w.ctx, node)
			w.done(node)
		}
		select {
		case <-w.wake:
		case <-w.ctx.Done():
			return
		}
	}
}

func (w *statusWriter) write(ctx context.Context, node string) {
	now := time.Now()
	r, ok := w.live(node, now)
	final := false
	if !ok {
		w.mu.Lock()
		r, final = w.finals[node]
		delete(w.finals, node)
		w.mu.Unlock()
		if !final {
			return
		}
	}
	ctx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancel()
	key := StatusPrefix + node
	if final {
		// Mark the proxy disconnected only if the stored record is still this
		// stream's: it may have reconnected to another replica meanwhile. (A write
		// from that replica between this Get and the Put below is overwritten; its
		// next refresh, a third of the TTL later, corrects it.)
		kv, err := w.st.Get(ctx, key)
		if err == nil {
			var stored record
			if json.Unmarshal(kv.Value, &stored) == nil && stored.Conn != r.Conn {
				return
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			w.failed(node, err)
			return
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		w.failed(node, err)
		return
	}
	if _, err := w.st.PutWithTTL(ctx, key, b, w.ttl); err != nil {
		w.failed(node, err)
	}
}

// failed logs a failed write, at most once every 10 s (a store outage would
// otherwise log once per proxy).
func (w *statusWriter) failed(node string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if time.Since(w.lastErr) < 10*time.Second {
		w.suppressed++
		return
	}
	w.log.Warn("writing proxy status to the store failed; status may be stale", "node", node, "err", err, "suppressed_since_last", w.suppressed)
	w.lastErr = time.Now()
	w.suppressed = 0
}
