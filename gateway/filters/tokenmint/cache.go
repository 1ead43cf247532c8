package tokenmint

import (
	"sync"
	"time"
)

// tokenCache holds minted tokens (as header values) until they are too old to
// hand out. It never holds more than max entries: when full, it drops expired
// entries and, if that frees nothing, an eighth of the others, so that a flood of
// new callers costs amortised constant time per token rather than a full sweep
// each.
type tokenCache struct {
	mu  sync.RWMutex
	max int
	m   map[string]cachedToken
}

type cachedToken struct {
	value string
	until time.Time // hand out before this instant only
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{max: size, m: make(map[string]cachedToken, min(size, 1024))}
}

// get returns the token cached under key, if it may still be handed out at now.
// The []byte-to-string conversion in the map index does not allocate.
func (c *tokenCache) get(key []byte, now time.Time) (string, bool) {
	c.mu.RLock()
	e, ok := c.m[string(key)]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return "", false
	}
	return e.value, true
}

func (c *tokenCache) put(key, value string, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, replacing := c.m[key]; !replacing && len(c.m) >= c.max {
		c.evict(now)
	}
	c.m[key] = cachedToken{value: value, until: until}
}

// evict makes room: expired entries first, else an eighth of the entries (at
// least one), whichever the map's iteration order gives.
func (c *tokenCache) evict(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.until) {
			delete(c.m, k)
		}
	}
	if len(c.m) < c.max {
		return
	}
	n := max(c.max/8, 1)
	for k := range c.m {
		if n == 0 {
			break
		}
		delete(c.m, k)
		n--
	}
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
