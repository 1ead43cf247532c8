package push

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the push server's Prometheus series. They live on the Server, never
// in package globals, so that tests and several servers in one process do not share them.
type metrics struct {
	connected   *prometheus.GaugeVec
	pushes      *prometheus.CounterVec
	ackLatency  prometheus.Histogram
	nacks       *prometheus.CounterVec
	scopeErrors prometheus.Counter
	revision    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portcullis_controlplane_proxies_connected",
			Help: "Proxies with an open config stream to this control-plane replica, by role.",
		}, []string{"role"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_controlplane_pushes_total",
			Help: "Config updates sent to proxies, by role.",
		}, []string{"role"}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portcullis_controlplane_push_ack_seconds",
			Help:    "Time from sending a config update to the proxy's ACK or NACK of it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_controlplane_nacks_total",
			Help: "Config updates refused by proxies (NACK), by role.",
		}, []string{"role"}),
		scopeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_controlplane_scoping_errors_total",
			Help: "Scoped configs not sent because they failed validation (counted once per proxy identity and version).",
		}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_controlplane_config_revision",
			Help: "The store revision of the resources the push server scopes configs from.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connected, m.pushes, m.ackLatency, m.nacks, m.scopeErrors, m.revision} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("push: registering metrics (one push server per registry): %w", err)
		}
	}
	return m, nil
}
