package jwt

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"

	"github.com/portcullis/portcullis/gateway/filter"
)

// verifiedCache remembers tokens that passed every check, so that a client
// presenting the same token again (every request of a session does) costs a
// SHA-256 and a map lookup instead of a signature verification: an ES256 check
// costs tens of microseconds, more than the rest of the proxy path.
//
// What keeps it safe:
//   - The key is the SHA-256 of the whole token: a hit means these exact bytes were
//     verified before (a second preimage is out of reach). Failed tokens are never
//     cached, so a forged token costs a verification every time.
//   - An entry holds the issuer's key set that verified it; when the key set is
//     replaced (a refresh, a rotation, a withdrawn key) the entry no longer counts
//     and the token is verified again against the new set.
//   - exp is checked again on every hit, with the same leeway; nbf and iat cannot
//     turn bad with time. An expired entry is a miss, and the full check then gives
//     the precise refusal.
//   - It is off with replay detection: there a second use must be refused anyway.
//
// It is bounded: two generations of at most max/2 entries each; when the current
// one fills it becomes the previous one and the oldest is dropped whole. A hit in
// the previous generation moves the entry forward, so tokens in use survive.
type verifiedCache struct {
	mu        sync.Mutex
	half      int
	cur, prev map[[sha256.Size]byte]*verified
}

// verified is what a request needs from an accepted token.
type verified struct {
	iss  *issuer
	keys *keySet // the issuer's key set at verification time
	exp  time.Time
	id   *filter.Identity
}

func newVerifiedCache(limit int) *verifiedCache {
	half := max(limit/2, 1)
	return &verifiedCache{half: half, cur: make(map[[sha256.Size]byte]*verified, half)}
}

// tokenSum hashes a token without copying it.
func tokenSum(tok string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(tok), len(tok)))
}

// get returns the entry for sum if it may still be used at now.
func (c *verifiedCache) get(sum [sha256.Size]byte, now time.Time, leeway time.Duration) *verified {
	c.mu.Lock()
	v, ok := c.cur[sum]
	if !ok {
		if v, ok = c.prev[sum]; ok {
			delete(c.prev, sum)
			c.insertLocked(sum, v)
		}
	}
	c.mu.Unlock()
	if !ok || v.keys != v.iss.src.keys.Load() || now.After(v.exp.Add(leeway)) {
		return nil
	}
	return v
}

func (c *verifiedCache) put(sum [sha256.Size]byte, v *verified) {
	c.mu.Lock()
	c.insertLocked(sum, v)
	c.mu.Unlock()
}

func (c *verifiedCache) insertLocked(sum [sha256.Size]byte, v *verified) {
	if len(c.cur) >= c.half {
		c.prev = c.cur
		c.cur = make(map[[sha256.Size]byte]*verified, c.half)
	}
	c.cur[sum] = v
}

func (c *verifiedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.prev)
}
