package upstream

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// maxLookupTime bounds one DNS lookup (or the refresh interval, when shorter),
// so that a hung resolver cannot stall refreshes.
const maxLookupTime = 5 * time.Second

// dnsConfig is a DNSDiscovery with its defaults applied.
type dnsConfig struct {
	name     string
	port     uint16
	interval time.Duration
}

// Refresh resolves the cluster's DNS name once and applies the result: new
// addresses become endpoints (with a pool, and a health checker when started),
// addresses that stay keep their *Endpoint with its health, outlier state and
// pool, and addresses that left have their checker stopped and pool closed. On a
// lookup error the current endpoints are kept. Start's loop calls it every
// refreshInterval; the snapshot compiler may call it to warm a new cluster
// before serving from it. It does nothing for a static cluster or after Close.
func (c *Cluster) Refresh(ctx context.Context) error {
	d := c.dns
	if d == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, min(d.interval, maxLookupTime))
	defer cancel()
	ips, err := c.resolver.LookupNetIP(ctx, "ip", d.name)
	if err != nil {
		return fmt.Errorf("upstream: cluster %s: resolving %s: %w", c.name, d.name, err)
	}
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		if !ip.IsValid() {
			continue
		}
		addrs = append(addrs, netip.AddrPortFrom(ip.Unmap(), d.port).String())
	}
	slices.Sort(addrs)
	c.apply(slices.Compact(addrs))
	return nil
}

// apply makes addrs (sorted, unique) the cluster's endpoints.
func (c *Cluster) apply(addrs []string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	current := make(map[string]*Endpoint, len(c.all))
	for _, ep := range c.all {
		current[ep.Addr] = ep
	}
	next := make([]*Endpoint, 0, len(addrs))
	added := 0
	for _, a := range addrs {
		if ep, ok := current[a]; ok {
			next = append(next, ep)
			delete(current, a)
			continue
		}
		ep := c.newEndpoint(a, defaultEndpointWeight)
		if c.started && c.hc != nil {
			c.startCheckLocked(ep)
		}
		next = append(next, ep)
		added++
	}
	var gone []*Endpoint
	for _, ep := range current {
		ep.flags.Or(flagRemoved) // a stale snapshot's Pick will pass it over
		if ep.stopCheck != nil {
			ep.stopCheck()
		}
		c.forgetLocked(ep)
		c.obs.EndpointRemoved(c.name, ep.Addr)
		gone = append(gone, ep)
	}
	if added == 0 && len(gone) == 0 {
		c.mu.Unlock()
		return
	}
	c.all = next
	c.rebuildLocked()
	c.mu.Unlock()

	// Pools are closed outside the lock: closing may wait for connections.
	for _, ep := range gone {
		closePool(ep, c.log)
	}
	c.log.Info("endpoints changed", "dns", c.dns.name, "added", added, "removed", len(gone), "endpoints", len(next))
}

// dnsLoop refreshes at once and then every refreshInterval ±10%. While the
// cluster has no endpoint at all it retries sooner, since it is useless until then.
func (c *Cluster) dnsLoop(ctx context.Context) {
	defer c.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait := c.dns.interval
		if err := c.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("dns refresh failed; keeping the current endpoints", "err", err)
			if len(c.set.Load().all) == 0 {
				wait = min(wait, time.Second)
			}
		}
		t.Reset(jitter(wait, c.rand()))
	}
}
