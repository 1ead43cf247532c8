package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
)

// FieldError is a problem with one field of a ClusterSpec. Field is the path
// inside the spec ("loadBalancer.stickyCookie.secretFile"), so that the caller
// can prefix "spec." and point at the file position.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the cause, so that errors.Is(err, fs.ErrNotExist) works.
func (e *FieldError) Unwrap() error { return e.Err }

// Defaults written in the field comments of config.ClusterSpec.
const (
	defaultDNSRefresh         = 30 * time.Second
	defaultHCInterval         = 5 * time.Second
	defaultHCTimeout          = time.Second
	defaultHealthyThreshold   = 2
	defaultUnhealthyThreshold = 3
	defaultConsecutive5xx     = 5
	defaultBaseEjectionTime   = 30 * time.Second
	defaultMaxEjectionPercent = 50
	defaultMaxConnections     = 1024
	defaultMaxPendingRequests = 1024
	defaultMaxRequests        = 1024
	defaultMaxRetries         = 3
	defaultEndpointWeight     = 1
)

type staticEndpoint struct {
	addr   string
	weight int
}

// configure checks spec (New may be called on a spec config.Validate has not
// seen, in tests and tools, so nothing is assumed) and fills c from it with the
// defaults applied. It returns the static endpoints.
func (c *Cluster) configure(spec config.ClusterSpec) ([]staticEndpoint, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Err: fmt.Errorf(format, args...)})
	}

	switch {
	case spec.Registry != nil && spec.DNS != nil:
		bad("registry", "dns and registry are exclusive")
	case spec.Registry != nil:
		// Endpoints are the registry service's healthy ones, filled in by the
		// control plane; none is allowed and means every request gets 503.
	case (len(spec.Endpoints) == 0) == (spec.DNS == nil):
		bad("endpoints", "exactly one of endpoints, dns and registry is required")
	}
	var static []staticEndpoint
	seen := map[string]int{}
	for i, e := range spec.Endpoints {
		f := fmt.Sprintf("endpoints[%d]", i)
		ap, err := netip.ParseAddrPort(e.Address)
		if err != nil || ap.Port() == 0 {
			bad(f+".address", "%q is not ip:port (host names go through dns)", e.Address)
			continue
		}
		w := e.Weight
		if w < 0 {
			bad(f+".weight", "must not be negative")
		}
		if w <= 0 {
			w = defaultEndpointWeight
		}
		addr := ap.String()
		if j, dup := seen[addr]; dup {
			bad(f+".address", "%s is already endpoints[%d]", addr, j)
			continue
		}
		seen[addr] = i
		static = append(static, staticEndpoint{addr: addr, weight: w})
	}
	if d := spec.DNS; d != nil {
		dc := &dnsConfig{name: d.Name, port: uint16(d.Port), interval: defaultDNSRefresh}
		if d.Name == "" {
			bad("dns.name", "required")
		}
		if d.Port < 1 || d.Port > 65535 {
			bad("dns.port", "%d is not a port (1-65535)", d.Port)
		}
		if d.RefreshInterval != nil {
			if dc.interval = d.RefreshInterval.D(); dc.interval <= 0 {
				bad("dns.refreshInterval", "must be positive")
			}
		}
		c.dns = dc
	}

	lb := spec.LoadBalancer
	c.policy = lb.Policy
	switch lb.Policy {
	case "":
		c.policy = config.LBRoundRobin
	case config.LBRoundRobin, config.LBLeastRequest, config.LBRandom:
	case config.LBRingHash, config.LBMaglev:
		if lb.Hash == nil {
			bad("loadBalancer.hash", "required for policy %s", lb.Policy)
		}
	default:
		bad("loadBalancer.policy", "%q is not one of roundRobin, leastRequest, random, ringHash, maglev", lb.Policy)
	}
	if h := lb.Hash; h != nil {
		n := 0
		for _, set := range []bool{h.Header != "", h.Cookie != "", h.SourceIP} {
			if set {
				n++
			}
		}
		switch {
		case n != 1:
			bad("loadBalancer.hash", "exactly one of header, cookie and sourceIP is required")
		case c.policy != config.LBRingHash && c.policy != config.LBMaglev:
			// Ignored by the other policies; accepted, as config.Validate does.
		case h.Header != "":
			c.hash = hashKey{kind: hashHeader, name: http.CanonicalHeaderKey(h.Header)}
		case h.Cookie != "":
			c.hash = hashKey{kind: hashCookie, name: h.Cookie}
		default:
			c.hash = hashKey{kind: hashSourceIP}
		}
	}
	if sc := lb.StickyCookie; sc != nil {
		s, err := newSticky(c.name, sc, c.log)
		if err != nil {
			errs = append(errs, err)
		}
		c.sticky = s
	}

	if hc := spec.HealthCheck; hc != nil {
		c.hc = c.configureHealth(hc, spec, bad)
	}
	if od := spec.OutlierDetection; od != nil {
		c.od = &outlier{threshold: defaultConsecutive5xx, base: defaultBaseEjectionTime, maxPercent: defaultMaxEjectionPercent}
		if od.Consecutive5xx < 0 {
			bad("outlierDetection.consecutive5xx", "must not be negative")
		} else if od.Consecutive5xx > 0 {
			c.od.threshold = int32(min(od.Consecutive5xx, 1<<30))
		}
		if od.BaseEjectionTime != nil {
			if c.od.base = od.BaseEjectionTime.D(); c.od.base <= 0 {
				bad("outlierDetection.baseEjectionTime", "must be positive")
			}
		}
		switch p := od.MaxEjectionPercent; {
		case p < 0 || p > 100:
			bad("outlierDetection.maxEjectionPercent", "%d is not between 0 and 100", p)
		case p > 0:
			c.od.maxPercent = p
		}
	}

	cb := spec.CircuitBreaker
	limit := func(field string, v, def int) int64 {
		if v < 0 {
			bad("circuitBreaker."+field, "must not be negative")
		}
		if v <= 0 {
			return int64(def)
		}
		return int64(v)
	}
	c.br.init(c,
		limit(LimitConnections, cb.MaxConnections, defaultMaxConnections),
		limit(LimitPending, cb.MaxPendingRequests, defaultMaxPendingRequests),
		limit(LimitRequests, cb.MaxRequests, defaultMaxRequests),
		limit(LimitRetries, cb.MaxRetries, defaultMaxRetries))

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return static, nil
}
