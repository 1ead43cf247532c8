package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// stateCollector exports the live state of the running snapshot's clusters at
// scrape time: circuit-breaker usage against its limits, and endpoints ejected
// or unhealthy. Reading at scrape time keeps the request path free of gauge updates.
type stateCollector struct {
	g        *Gateway
	inUse    *prometheus.Desc
	limit    *prometheus.Desc
	open     *prometheus.Desc
	ejected  *prometheus.Desc
	inflight *prometheus.Desc
}

func newStateCollector(g *Gateway, role string) *stateCollector {
	cl := prometheus.Labels{"role": role}
	return &stateCollector{
		g:        g,
		inUse:    prometheus.NewDesc("portcullis_upstream_circuit_breaker_in_use", "Slots of a circuit-breaker limit in use now.", []string{"cluster", "limit"}, cl),
		limit:    prometheus.NewDesc("portcullis_upstream_circuit_breaker_limit", "The configured circuit-breaker limit.", []string{"cluster", "limit"}, cl),
		open:     prometheus.NewDesc("portcullis_upstream_circuit_breaker_open", "1 while a circuit-breaker limit is reached (new work over it fails fast).", []string{"cluster", "limit"}, cl),
		ejected:  prometheus.NewDesc("portcullis_upstream_endpoint_ejected", "1 while an endpoint is ejected by outlier detection.", []string{"cluster", "endpoint"}, cl),
		inflight: prometheus.NewDesc("portcullis_upstream_endpoint_in_flight", "Requests in flight to an endpoint.", []string{"cluster", "endpoint"}, cl),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.inUse, c.limit, c.open, c.ejected, c.inflight} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.current.Load()
	if s == nil {
		return
	}
	for name, up := range s.Clusters() {
		b := up.Breaker()
		for _, l := range []struct {
			limit  string
			n, max int64
		}{
			{"maxConnections", b.Connections, b.MaxConnections},
			{"maxPendingRequests", b.Pending, b.MaxPending},
			{"maxRequests", b.Requests, b.MaxRequests},
			{"maxRetries", b.Retries, b.MaxRetries},
		} {
			ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(l.n), name, l.limit)
			ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(l.max), name, l.limit)
			open := 0.0
			if l.max > 0 && l.n >= l.max {
				open = 1
			}
			ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, open, name, l.limit)
		}
		for _, e := range up.Endpoints() {
			ej := 0.0
			if e.Ejected {
				ej = 1
			}
			ch <- prometheus.MustNewConstMetric(c.ejected, prometheus.GaugeValue, ej, name, e.Addr)
			ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(e.InFlight), name, e.Addr)
		}
	}
}
