package jwt

import (
	"container/heap"
	"math"
	"sync"
	"time"
)

// replayCache remembers the jti (RFC 7519 §4.1.7) of every token accepted on a
// route until that token expires, so that the same token presented twice is
// refused (MS-SS-8; SM-DR21 on bearer-token reuse). An entry is needed only while
// the token could still pass the exp check; after that the token is refused as
// expired anyway, so entries leave at exp + leeway and memory follows the number
// of live tokens, bounded by max.
//
// When max live entries are held, new tokens are refused rather than evicting an
// entry: evicting would silently re-open replay for the evicted token, and only
// the identity provider can mint the distinct valid tokens needed to fill the
// cache. An operator who sees jwt_replay_cache_full raises maxJTIs.
type replayCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]int64 // key -> expiry, Unix nanoseconds
	exp  expiries         // the same entries, soonest expiry first
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[string]int64)}
}

// Results of replayCache.add.
const (
	replayFresh = iota // first sighting: the token is accepted and remembered
	replaySeen         // seen before and not yet expired: a replay
	replayFull         // no room to remember it: refused, fail closed
)

// add checks key and records it until expires. Check and record are one step
// under the lock, so that two concurrent requests with the same token cannot both
// pass.
func (c *replayCache) add(key string, expires, now time.Time) int {
	n := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.exp) > 0 && c.exp[0].at <= n {
		e := heap.Pop(&c.exp).(expiry)
		// A key lives in the map once at a time (a new entry needs the old one gone,
		// which this loop does first), so its map value is this entry's.
		delete(c.seen, e.key)
	}
	if _, ok := c.seen[key]; ok {
		return replaySeen
	}
	if len(c.seen) >= c.max {
		return replayFull
	}
	at := int64(math.MaxInt64) // beyond year 2262 UnixNano would wrap and expire the entry at once
	if expires.Before(maxTime) {
		at = expires.UnixNano()
	}
	c.seen[key] = at
	heap.Push(&c.exp, expiry{at: at, key: key})
	return replayFresh
}

// len is the number of live entries, for tests.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

var maxTime = time.Unix(0, math.MaxInt64)

type expiry struct {
	at  int64
	key string
}

// expiries is a min-heap by expiry (container/heap).
type expiries []expiry

func (h expiries) Len() int           { return len(h) }
func (h expiries) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiries) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiries) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiries) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = expiry{}
	*h = old[:len(old)-1]
	return e
}
