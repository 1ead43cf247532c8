package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/gateway/certs"
)

// stateCollector exports the live state of the running snapshot's clusters at
// scrape time: circuit-breaker usage against its limits, and endpoints ejected
// or unhealthy; and the certificates ACME manages for each HTTPS listener. Reading
// at scrape time keeps the request path free of gauge updates.
type stateCollector struct {
	g        *Gateway
	inUse    *prometheus.Desc
	limit    *prometheus.Desc
	open     *prometheus.Desc
	ejected  *prometheus.Desc
	inflight *prometheus.Desc
	tunnels  *prometheus.Desc

	certExpiry *prometheus.Desc
	certState  *prometheus.Desc
	acmeEvents *prometheus.Desc
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
		tunnels:  prometheus.NewDesc("portcullis_upstream_tunnels_open", "Upgraded connections (WebSocket and the like) open to a cluster now.", []string{"cluster"}, cl),

		certExpiry: prometheus.NewDesc("portcullis_tls_certificate_expiry_timestamp_seconds", "NotAfter of the certificate ACME manages for a name and serves now (absent before the first one).", []string{"listener", "name"}, cl),
		certState:  prometheus.NewDesc("portcullis_tls_certificate_state", "1 for the state of a managed name: pending, valid or failed (a failed renewal may still serve the old certificate).", []string{"listener", "name", "state"}, cl),
		acmeEvents: prometheus.NewDesc("portcullis_acme_certificates_total", "Certificates obtained and renewed, and failed attempts, by a listener's ACME manager since it started.", []string{"listener", "outcome"}, cl),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.inUse, c.limit, c.open, c.ejected, c.inflight, c.tunnels, c.certExpiry, c.certState, c.acmeEvents} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.collectCertificates(ch)
	s := c.g.current.Load()
	if s == nil {
		return
	}
	for name, n := range s.OpenTunnels() {
		ch <- prometheus.MustNewConstMetric(c.tunnels, prometheus.GaugeValue, float64(n), name)
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

func (c *stateCollector) collectCertificates(ch chan<- prometheus.Metric) {
	for listener, lc := range c.g.CertificateStatus() {
		for _, n := range lc.Names {
			if !n.NotAfter.IsZero() {
				ch <- prometheus.MustNewConstMetric(c.certExpiry, prometheus.GaugeValue, float64(n.NotAfter.Unix()), listener, n.Name)
			}
			for _, st := range []string{certs.StatePending, certs.StateValid, certs.StateFailed} {
				v := 0.0
				if n.State == st {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(c.certState, prometheus.GaugeValue, v, listener, n.Name, st)
			}
		}
		for _, e := range []struct {
			outcome string
			n       uint64
		}{{"obtained", lc.Stats.Obtained}, {"renewed", lc.Stats.Renewed}, {"failed", lc.Stats.Failed}} {
			ch <- prometheus.MustNewConstMetric(c.acmeEvents, prometheus.CounterValue, float64(e.n), listener, e.outcome)
		}
	}
}
