package ratelimit

import (
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
)

// SetClock replaces a built filter's clock, so that tests can refill buckets
// without sleeping. Call it before serving requests.
func SetClock(f filter.Filter, now func() time.Time) { f.(*limiter).now = now }

// Keys is the number of keys the filter's table holds.
func Keys(f filter.Filter) int { return f.(*limiter).table.len() }
