package oidc

import (
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
)

// SetClock replaces a built filter's clock (session and flow lifetimes, ID-token
// expiry), so that tests can move time forward without sleeping. Call it before
// serving requests.
func SetClock(f filter.Filter, now func() time.Time) { f.(*oidcFilter).now = now }

// FlowCookieName is the name of the flow cookie of a login with this state.
func FlowCookieName(f filter.Filter, state string) string { return f.(*oidcFilter).flowName(state) }
