package fault

import (
	"context"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
)

// SetWait replaces how a built fault filter waits, so that tests can count delays
// over thousands of requests without sleeping. Call it before serving requests.
func SetWait(f filter.Filter, w func(ctx context.Context, d time.Duration) error) {
	f.(*fault).wait = w
}
