package jwt

import (
	"context"
	"slices"

	"github.com/portcullis/portcullis/gateway/filter"
)

// Refresh makes a built filter fetch (or re-read) the key set of issuer now, outside
// the schedule and the unknown-kid rate limit, and waits for it, so that tests need
// not sleep through a refresh interval.
func Refresh(f filter.Filter, issuer string) {
	f.(*jwtFilter).issuers[issuer].src.fetchAndWait(context.Background(), false)
}

// KeyIDs lists the kids of issuer's current key set, sorted.
func KeyIDs(f filter.Filter, issuer string) []string {
	ks := f.(*jwtFilter).issuers[issuer].src.keys.Load()
	if ks == nil {
		return nil
	}
	var out []string
	for _, k := range ks.all {
		out = append(out, k.kid)
	}
	slices.Sort(out)
	return out
}

// ReplayEntries is the number of jtis the replay cache holds.
func ReplayEntries(f filter.Filter) int { return f.(*jwtFilter).replay.len() }

// CachedTokens is the number of verified tokens the filter keeps; -1 when the
// cache is off.
func CachedTokens(f filter.Filter) int {
	c := f.(*jwtFilter).cache
	if c == nil {
		return -1
	}
	return c.len()
}
