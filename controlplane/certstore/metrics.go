package certstore

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// RPC names, for metrics and logs.
const (
	rpcStore  = "store"
	rpcLoad   = "load"
	rpcDelete = "delete"
	rpcStat   = "stat"
	rpcList   = "list"
	rpcLock   = "lock"
)

type metrics struct {
	held    *prometheus.GaugeVec
	refused *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portcullis_controlplane_cert_locks_held",
			Help: "ACME locks held by ingress proxies through this replica, by namespace.",
		}, []string{"namespace"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_controlplane_cert_storage_refused_total",
			Help: "Certificate storage calls refused, by call and reason (unauthenticated, permission_denied, invalid, too_many_locks).",
		}, []string{"rpc", "reason"}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if err := reg.Register(m.held); err != nil {
		return errors.Join(errors.New("certstore: registering metrics"), err)
	}
	if err := reg.Register(m.refused); err != nil {
		reg.Unregister(m.held)
		return errors.Join(errors.New("certstore: registering metrics"), err)
	}
	return nil
}

func reasonOf(c codes.Code) string {
	switch c {
	case codes.Unauthenticated:
		return "unauthenticated"
	case codes.PermissionDenied:
		return "permission_denied"
	case codes.InvalidArgument:
		return "invalid"
	case codes.ResourceExhausted:
		return "too_many_locks"
	default:
		return "other"
	}
}
