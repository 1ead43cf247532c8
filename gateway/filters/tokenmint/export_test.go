package tokenmint

import (
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
)

// SetClock replaces a built filter's clock, so that tests can age cached tokens
// without sleeping. Call it before serving requests.
func SetClock(f filter.Filter, now func() time.Time) { f.(*minter).now = now }

// CacheLen is the number of tokens the filter's cache holds, -1 without a cache.
func CacheLen(f filter.Filter) int {
	if c := f.(*minter).cache; c != nil {
		return c.len()
	}
	return -1
}
