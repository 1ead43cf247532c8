package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
)

// healthConfig is a HealthCheck with its defaults applied.
type healthConfig struct {
	path               string
	interval, timeout  time.Duration
	healthyThreshold   int
	unhealthyThreshold int
	expected           []int // nil: 200-399
}

func (h *healthConfig) ok(status int) bool {
	if h.expected == nil {
		return status >= 200 && status <= 399
	}
	return slices.Contains(h.expected, status)
}

func (c *Cluster) configureHealth(hc *config.HealthCheck, spec config.ClusterSpec, bad func(field, format string, args ...any)) *healthConfig {
	h := &healthConfig{
		path:               hc.Path,
		interval:           defaultHCInterval,
		timeout:            defaultHCTimeout,
		healthyThreshold:   defaultHealthyThreshold,
		unhealthyThreshold: defaultUnhealthyThreshold,
		expected:           hc.ExpectedStatuses,
	}
	if len(hc.Path) == 0 || hc.Path[0] != '/' {
		bad("healthCheck.path", "required, and must start with '/'")
	}
	if hc.Interval != nil {
		if h.interval = hc.Interval.D(); h.interval <= 0 {
			bad("healthCheck.interval", "must be positive")
		}
	}
	if hc.Timeout != nil {
		if h.timeout = hc.Timeout.D(); h.timeout <= 0 {
			bad("healthCheck.timeout", "must be positive")
		}
	}
	threshold := func(field string, v int, dst *int) {
		if v < 0 {
			bad("healthCheck."+field, "must not be negative")
		} else if v > 0 {
			*dst = v
		}
	}
	threshold("healthyThreshold", hc.HealthyThreshold, &h.healthyThreshold)
	threshold("unhealthyThreshold", hc.UnhealthyThreshold, &h.unhealthyThreshold)
	for i, s := range hc.ExpectedStatuses {
		if s < 100 || s > 599 {
			bad(fmt.Sprintf("healthCheck.expectedStatuses[%d]", i), "%d is not an HTTP status", s)
		}
	}
	if c.probe == nil {
		if spec.TLS != nil || spec.Protocol == config.UpstreamHTTP2 || spec.Protocol == config.UpstreamH2C {
			// Probing a TLS or HTTP/2-only port with plain HTTP/1.1 would mark
			// every endpoint unhealthy; the proxy must say how to reach it.
			bad("healthCheck", "the built-in probe speaks plain HTTP/1.1; with tls or protocol %s the proxy must supply Options.Probe", spec.Protocol)
		}
		c.probeClient = &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // never send health checks through HTTP_PROXY
				MaxIdleConnsPerHost: 1,
				DisableCompression:  true,
			},
			// A redirect is an answer: judge its status, do not follow it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		c.probe = httpProbe(c.probeClient)
	}
	return h
}

// httpProbe is the default probe: GET http://addr/path.
func httpProbe(client *http.Client) ProbeFunc {
	return func(ctx context.Context, ep *Endpoint, path string) (int, error) {
		return ProbeHTTP(ctx, client, "http://"+ep.Addr+path, "portcullis-health-check")
	}
}

// ProbeHTTP sends one health check, GET url, and returns the status. It reads at
// most 64 KiB of the body, so the connection can be reused while a health
// endpoint that sends more is not read to the end. The control plane's registry
// probes its endpoints with it too.
func ProbeHTTP(ctx context.Context, client *http.Client, url, userAgent string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// startCheckLocked starts ep's health checker. c.mu must be held, the cluster
// started and not closed.
func (c *Cluster) startCheckLocked(ep *Endpoint) {
	ctx, cancel := context.WithCancel(c.ctx)
	ep.stopCheck = cancel
	c.wg.Add(1)
	go c.checkLoop(ctx, ep)
}

// checkLoop probes ep until ctx ends: at once, then every interval with ±10%
// jitter so that the probes of many endpoints and gateways do not bunch up.
// Endpoints start healthy; unhealthyThreshold consecutive failures mark one
// unhealthy and healthyThreshold consecutive successes healthy again.
func (c *Cluster) checkLoop(ctx context.Context, ep *Endpoint) {
	defer c.wg.Done()
	h := c.hc
	var successes, failures int
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, h.timeout)
		status, err := c.probe(pctx, ep, h.path)
		cancel()
		if ctx.Err() != nil {
			return // stopped mid-probe: the result says nothing about ep
		}
		healthy := ep.flags.Load()&flagUnhealthy == 0
		if err == nil && h.ok(status) {
			successes, failures = min(successes+1, h.healthyThreshold), 0
			if !healthy && successes >= h.healthyThreshold {
				c.setHealth(ep, true, nil)
			}
		} else {
			successes, failures = 0, min(failures+1, h.unhealthyThreshold)
			if err == nil {
				err = fmt.Errorf("status %d", status)
			}
			if healthy && failures >= h.unhealthyThreshold {
				c.setHealth(ep, false, err)
			}
		}
		t.Reset(jitter(h.interval, c.rand()))
	}
}

// setHealth records a health transition, rebuilds the balancer and reports it.
func (c *Cluster) setHealth(ep *Endpoint, healthy bool, cause error) {
	c.mu.Lock()
	if c.closed || ep.flags.Load()&flagRemoved != 0 {
		c.mu.Unlock()
		return
	}
	if healthy {
		ep.flags.And(^flagUnhealthy)
	} else {
		ep.flags.Or(flagUnhealthy)
	}
	c.rebuildLocked()
	// Reported under the lock, so that a removal of ep (DNS, Close) cannot come
	// between the check above and the report, and leave a series behind it.
	c.obs.EndpointHealth(c.name, ep.Addr, healthy)
	c.mu.Unlock()
	if healthy {
		c.log.Info("endpoint healthy", "addr", ep.Addr)
	} else {
		c.log.Warn("endpoint unhealthy", "addr", ep.Addr, "err", cause)
	}
}

// jitter returns d ± 10%, chosen by r.
func jitter(d time.Duration, r uint64) time.Duration {
	span := uint64(d / 5)
	if span == 0 {
		return d
	}
	return d - d/10 + time.Duration(bounded(r, span))
}
