package registry

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/gateway/config"
)

// table holds one value per endpoint, by service, then address.
type table[T any] map[serviceKey]map[string]T

func (t table[T]) put(svc serviceKey, addr string, v T) {
	m := t[svc]
	if m == nil {
		m = map[string]T{}
		t[svc] = m
	}
	m[addr] = v
}

func (t table[T]) remove(svc serviceKey, addr string) {
	if m := t[svc]; m != nil {
		delete(m, addr)
		if len(m) == 0 {
			delete(t, svc)
		}
	}
}

type storedRecord struct {
	record
	rev int64
}

type storedVerdict struct {
	verdict
	rev int64
}

// published is what Endpoints answers from: one entry per service with at least
// one registration. It is replaced whole, never changed.
type published map[serviceKey][]config.Endpoint

// view is every registration and verdict in the store, kept by two watches (one
// per prefix). Writers are the two watch goroutines; Endpoints reads the
// published map with one atomic load, everything else reads under mu.
type view struct {
	allowLoopback bool
	log           *slog.Logger

	mu       sync.RWMutex
	records  table[storedRecord]
	verdicts table[storedVerdict]

	published atomic.Pointer[published]
	changed   broadcast // the healthy endpoints of some service changed
	updated   broadcast // any registration or verdict changed (for the health checker)
}

func newView(allowLoopback bool, log *slog.Logger) *view {
	v := &view{allowLoopback: allowLoopback, log: log, records: table[storedRecord]{}, verdicts: table[storedVerdict]{}}
	empty := published{}
	v.published.Store(&empty)
	return v
}

// healthy reports whether one registration takes traffic: the registrant's word,
// or with a health_check_path the checker's verdict on this very registration.
// A checked registration without a verdict yet is not healthy: the leader probes
// new registrations at once, and an endpoint nobody has seen answer should not
// take traffic.
func (v *view) healthyLocked(svc serviceKey, addr string, r record) bool {
	if r.HealthCheckPath == "" {
		return r.Healthy
	}
	vd, ok := v.verdicts[svc][addr]
	return ok && vd.ID == r.ID && vd.Healthy
}

// endpointsLocked is the sorted healthy endpoints of svc, and whether it has any
// registration at all.
func (v *view) endpointsLocked(svc serviceKey) ([]config.Endpoint, bool) {
	recs := v.records[svc]
	if len(recs) == 0 {
		return nil, false
	}
	var eps []config.Endpoint
	for addr, r := range recs {
		if v.healthyLocked(svc, addr, r.record) {
			eps = append(eps, config.Endpoint{Address: addr, Weight: r.Weight})
		}
	}
	slices.SortFunc(eps, func(a, b config.Endpoint) int { return cmp.Compare(a.Address, b.Address) })
	return eps, true
}

// republishLocked recomputes the touched services and publishes a new map when
// any of them changed; Changed fires only when a healthy set did.
func (v *view) republishLocked(touched map[serviceKey]bool) {
	old := *v.published.Load()
	var next published
	healthyChanged := false
	for svc := range touched {
		eps, registered := v.endpointsLocked(svc)
		prev, had := old[svc]
		if had == registered && slices.Equal(prev, eps) {
			continue
		}
		if next == nil {
			next = maps.Clone(old)
		}
		if registered {
			next[svc] = eps
		} else {
			delete(next, svc)
		}
		healthyChanged = healthyChanged || !slices.Equal(prev, eps)
	}
	if next != nil {
		v.published.Store(&next)
	}
	if healthyChanged {
		v.changed.fire()
	}
	v.updated.fire()
}

func (v *view) replaceRecords(kvs []store.KV) {
	v.mu.Lock()
	defer v.mu.Unlock()
	touched := keysOf(v.records)
	v.records = table[storedRecord]{}
	for _, kv := range kvs {
		svc, addr, r, err := decodeRecord(kv, v.allowLoopback)
		if err != nil {
			v.log.Warn("registry: ignoring a stored registration", "err", err)
			continue
		}
		v.records.put(svc, addr, storedRecord{r, kv.ModRevision})
		touched[svc] = true
	}
	v.republishLocked(touched)
}

func (v *view) applyRecords(events []store.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	touched := map[serviceKey]bool{}
	for _, ev := range events {
		if ev.Type == store.EventDelete {
			if svc, addr, ok := parseEndpointKey(Prefix, ev.KV.Key); ok {
				v.records.remove(svc, addr)
				touched[svc] = true
			}
			continue
		}
		svc, addr, r, err := decodeRecord(ev.KV, v.allowLoopback)
		if err != nil {
			v.log.Warn("registry: ignoring a stored registration", "err", err)
			if addr != "" {
				v.records.remove(svc, addr) // whatever was there has been overwritten
				touched[svc] = true
			}
			continue
		}
		v.records.put(svc, addr, storedRecord{r, ev.KV.ModRevision})
		touched[svc] = true
	}
	v.republishLocked(touched)
}

func (v *view) replaceVerdicts(kvs []store.KV) {
	v.mu.Lock()
	defer v.mu.Unlock()
	touched := keysOf(v.verdicts)
	v.verdicts = table[storedVerdict]{}
	for _, kv := range kvs {
		svc, addr, vd, err := decodeVerdict(kv)
		if err != nil {
			v.log.Warn("registry: ignoring a stored health verdict", "err", err)
			continue
		}
		v.verdicts.put(svc, addr, storedVerdict{vd, kv.ModRevision})
		touched[svc] = true
	}
	v.republishLocked(touched)
}

func (v *view) applyVerdicts(events []store.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	touched := map[serviceKey]bool{}
	for _, ev := range events {
		svc, addr, ok := parseEndpointKey(HealthPrefix, ev.KV.Key)
		if !ok {
			continue
		}
		touched[svc] = true
		if ev.Type == store.EventDelete {
			v.verdicts.remove(svc, addr)
			continue
		}
		_, _, vd, err := decodeVerdict(ev.KV)
		if err != nil {
			v.log.Warn("registry: ignoring a stored health verdict", "err", err)
			v.verdicts.remove(svc, addr)
			continue
		}
		v.verdicts.put(svc, addr, storedVerdict{vd, ev.KV.ModRevision})
	}
	v.republishLocked(touched)
}

func keysOf[T any](t table[T]) map[serviceKey]bool {
	out := make(map[serviceKey]bool, len(t))
	for k := range t {
		out[k] = true
	}
	return out
}

// lookup returns a service's registrations, sorted by address.
func (v *view) lookup(svc serviceKey, includeUnhealthy bool) []entry {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]entry, 0, len(v.records[svc]))
	for addr, r := range v.records[svc] {
		h := v.healthyLocked(svc, addr, r.record)
		if h || includeUnhealthy {
			out = append(out, entry{r.record, h})
		}
	}
	slices.SortFunc(out, func(a, b entry) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

// entry is a registration with its effective health.
type entry struct {
	record
	healthy bool
}

// current returns one registration, if the view has it.
func (v *view) current(svc serviceKey, addr string) (entry, int, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	r, ok := v.records[svc][addr]
	return entry{r.record, ok && v.healthyLocked(svc, addr, r.record)}, len(v.records[svc]), ok
}

// healthOf is the effective health r would have if stored now.
func (v *view) healthOf(svc serviceKey, addr string, r record) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.healthyLocked(svc, addr, r)
}

// counts calls fn for every service with registrations.
func (v *view) counts(fn func(svc serviceKey, registered, healthy int)) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for svc, recs := range v.records {
		h := 0
		for addr, r := range recs {
			if v.healthyLocked(svc, addr, r.record) {
				h++
			}
		}
		fn(svc, len(recs), h)
	}
}

// checked is a registration the health checker probes, with its stored verdict.
type checked struct {
	svc     serviceKey
	addr    string
	rec     record
	verdict *verdict // nil: none stored for this registration
}

// staleVerdict is a stored verdict whose registration is gone or was replaced.
type staleVerdict struct {
	key string // below HealthPrefix
	rev int64
}

// forChecker lists what the health checker works on.
func (v *view) forChecker() ([]checked, []staleVerdict) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []checked
	for svc, recs := range v.records {
		for addr, r := range recs {
			if r.HealthCheckPath == "" {
				continue
			}
			c := checked{svc: svc, addr: addr, rec: r.record}
			if vd, ok := v.verdicts[svc][addr]; ok && vd.ID == r.ID {
				c.verdict = &vd.verdict
			}
			out = append(out, c)
		}
	}
	var stale []staleVerdict
	for svc, vds := range v.verdicts {
		for addr, vd := range vds {
			if r, ok := v.records[svc][addr]; !ok || r.ID != vd.ID || r.HealthCheckPath == "" {
				stale = append(stale, staleVerdict{HealthPrefix + endpointKey(svc, addr), vd.rev})
			}
		}
	}
	return out, stale
}

// follow lists prefix, hands the listing to replace, then hands every watched
// batch to apply, listing again whenever the watch ends (compaction, a lost
// member), until ctx ends. listed is called after the first listing.
func follow(ctx context.Context, st store.Store, log *slog.Logger, prefix string, replace func([]store.KV), apply func([]store.Event), listed func()) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		kvs, rev, err := st.List(ctx, prefix)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("registry: listing the store failed; retrying", "prefix", prefix, "err", err, "in", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = minBackoff
		replace(kvs)
		if listed != nil {
			listed()
			listed = nil
		}
		for wr := range st.Watch(ctx, prefix, rev) {
			if wr.Err != nil {
				if ctx.Err() == nil {
					log.Warn("registry: store watch ended; listing again", "prefix", prefix, "err", wr.Err)
					sleep(ctx, minBackoff) // a member without a quorum ends watches at once
				}
				break
			}
			apply(wr.Events)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// broadcast is a signal for any number of waiters: wait returns a channel closed
// by the next fire. Fires between two waits coalesce into one.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) fire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
