package registry

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the registry's Prometheus metrics. The endpoint gauges are read
// from the view at scrape time (a collector), so they cost nothing between
// scrapes and never disagree with Endpoints.
type metrics struct {
	view       *view
	registered *prometheus.Desc
	healthy    *prometheus.Desc
	checks     *prometheus.CounterVec
	refused    *prometheus.CounterVec
}

func newMetrics(v *view) *metrics {
	labels := []string{"namespace", "service"}
	return &metrics{
		view: v,
		registered: prometheus.NewDesc("portcullis_registry_endpoints",
			"Endpoints registered, healthy or not, by registry service.", labels, nil),
		healthy: prometheus.NewDesc("portcullis_registry_healthy_endpoints",
			"Endpoints that take traffic, by registry service.", labels, nil),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_registry_health_checks_total",
			Help: "Health-check probes of registered endpoints by result: healthy (2xx, 3xx), unhealthy (another status) or error (no answer in time).",
		}, []string{"namespace", "service", "result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_registry_refused_total",
			Help: "Registry calls refused, by call (register, deregister, lookup) and reason.",
		}, []string{"rpc", "reason"}),
	}
}

// Describe implements prometheus.Collector for the endpoint gauges.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.registered
	ch <- m.healthy
}

// Collect implements prometheus.Collector for the endpoint gauges.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.view.counts(func(svc serviceKey, registered, healthy int) {
		ch <- prometheus.MustNewConstMetric(m.registered, prometheus.GaugeValue, float64(registered), svc.namespace, svc.name)
		ch <- prometheus.MustNewConstMetric(m.healthy, prometheus.GaugeValue, float64(healthy), svc.namespace, svc.name)
	})
}

func (m *metrics) register(reg prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m, m.checks, m.refused} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return errors.Join(errors.New("registry: registering metrics"), err)
		}
		done = append(done, c)
	}
	return nil
}

func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range []prometheus.Collector{m, m.checks, m.refused} {
		reg.Unregister(c)
	}
}
