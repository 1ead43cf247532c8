package ratelimit

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// key is a rate-limit key in fixed size: an IP address (or address prefix) in its
// 16-byte form, or a 128-bit keyed digest of a header value, a subject or a claim
// (see digester). Fixed size bounds the memory of an entry whatever a client sends,
// keeps secrets such as API keys out of the table, and makes lookups
// allocation-free.
type key [16]byte

// entry is one key's token bucket and the plan it was last set to.
type entry struct {
	lim  *rate.Limiter
	plan atomic.Int32
	mu   sync.Mutex // serialises plan switches (rare) and countOnly reservations
	// inflight counts countOnly attempts forwarded and not yet settled: tokens
	// reserved, not yet taken or given back. Guarded by mu.
	inflight int32
}

func newEntry(p int32, pl *plan) *entry {
	e := &entry{lim: rate.NewLimiter(pl.limit, pl.burst)}
	e.plan.Store(p)
	return e
}

// setPlan moves the bucket to plan p when a request names another plan than the
// last one (a client whose plan header changed). The tokens it holds stay.
func (e *entry) setPlan(now time.Time, p int32, pl *plan) {
	if e.plan.Load() == p {
		return
	}
	e.mu.Lock()
	if e.plan.Load() != p {
		e.lim.SetLimitAt(now, pl.limit)
		e.lim.SetBurstAt(now, pl.burst)
		e.plan.Store(p)
	}
	e.mu.Unlock()
}

// table maps keys to buckets in bounded memory: a sharded map where each shard keeps
// two generations. New keys go into the current generation; when it is full, it
// becomes the previous one and the old previous one is dropped; a key found in the
// previous generation is moved to the current one. So a key used within the last
// generation survives, and one idle for a whole generation of new keys is evicted:
// LRU at generation granularity, without a list to update on every hit.
//
// Bound: each shard holds at most 2*genCap entries and shards*2*genCap <= maxKeys.
// An evicted key that comes back starts with a full bucket, so eviction can only
// ever be generous to the evicted client, never stricter.
type table struct {
	seed   maphash.Seed
	shards []shard
	mask   uint64
	genCap int
}

type shard struct {
	mu   sync.Mutex
	cur  map[key]*entry
	prev map[key]*entry
	_    [40]byte // keep shards on separate cache lines: each has its own lock
}

// newTable sizes a table for at most maxKeys entries (maxKeys >= 2). It uses up to
// 64 shards, fewer when that would leave generations of under 64 entries, since
// tiny generations evict keys that are still in use.
func newTable(maxKeys int) *table {
	n := 64
	for n > 1 && maxKeys/(2*n) < 64 {
		n /= 2
	}
	t := &table{seed: maphash.MakeSeed(), shards: make([]shard, n), mask: uint64(n - 1), genCap: maxKeys / (2 * n)}
	for i := range t.shards {
		t.shards[i].cur = map[key]*entry{}
		t.shards[i].prev = map[key]*entry{}
	}
	return t
}

// get returns k's entry, creating it on plan p when it is new.
func (t *table) get(k key, p int32, pl *plan) *entry {
	s := &t.shards[maphash.Bytes(t.seed, k[:])&t.mask]
	s.mu.Lock()
	e, ok := s.cur[k]
	if !ok {
		if e, ok = s.prev[k]; ok {
			delete(s.prev, k)
		} else {
			e = newEntry(p, pl)
		}
		if len(s.cur) >= t.genCap {
			// clear keeps the map's memory, so a flood of new keys does not turn
			// into a flood of map allocations.
			clear(s.prev)
			s.prev, s.cur = s.cur, s.prev
		}
		s.cur[k] = e
	}
	s.mu.Unlock()
	return e
}

// len is the number of keys held (for tests; it locks every shard in turn).
func (t *table) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.cur) + len(s.prev)
		s.mu.Unlock()
	}
	return n
}
