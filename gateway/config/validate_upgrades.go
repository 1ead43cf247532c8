package config

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Bounds of forward.upgradeIdleTimeout (0s: the default, 1h).
const (
	MinUpgradeIdleTimeout = time.Second
	MaxUpgradeIdleTimeout = 24 * time.Hour
)

// upgrades checks forward.upgrades and forward.upgradeIdleTimeout.
func (v *validator) upgrades(f func(string, string), p string, fw *Forward, ns string, clusters map[string]*Object[ClusterSpec]) {
	seen := map[string]bool{}
	for i, u := range fw.Upgrades {
		q := fmt.Sprintf("%s.upgrades[%d]", p, i)
		lower := strings.ToLower(u)
		switch {
		case !httpguts.ValidHeaderFieldName(u): // the same rule: a token (RFC 9110 §5.6.2)
			f(q, fmt.Sprintf("%q is not a protocol name (an Upgrade token without a version, RFC 9110 §7.8, such as websocket)", u))
		case lower == "h2c":
			// A tunnelled h2c upgrade gives the client an HTTP/2 connection to
			// the upstream on which its further requests bypass routing and
			// filters ("h2c smuggling").
			f(q, "h2c cannot be tunnelled: the client's later requests would bypass routing and filters; use an H2C listener or cluster")
		case seen[lower]:
			f(q, fmt.Sprintf("%q is listed twice", u))
		}
		seen[lower] = true
	}
	if d := fw.UpgradeIdleTimeout; d != nil && d.D() != 0 && (d.D() < MinUpgradeIdleTimeout || d.D() > MaxUpgradeIdleTimeout) {
		f(p+".upgradeIdleTimeout", "must be between 1s and 24h (0s: the default, 1h)")
	}
	if len(fw.Upgrades) == 0 {
		return
	}
	// An upgrade needs an HTTP/1.1 connection to the upstream; tunnelling over
	// HTTP/2 (extended CONNECT, RFC 8441) is not supported.
	for i, b := range fw.Backends {
		if c := clusters[ns+"/"+b.Cluster]; c != nil && (c.Spec.Protocol == UpstreamHTTP2 || c.Spec.Protocol == UpstreamH2C) {
			f(fmt.Sprintf("%s.backends[%d].cluster", p, i), fmt.Sprintf("cluster %q speaks %s; upgrades need an HTTP1 cluster", b.Cluster, c.Spec.Protocol))
		}
	}
}
