package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portcullis/portcullis/controlplane/store"
)

// metrics are the control plane's own metrics; push and registry register theirs
// on the same registry.
type metrics struct {
	storeLatency *prometheus.HistogramVec
	apiCalls     *prometheus.CounterVec
	leader       prometheus.Gauge
	auditDropped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		storeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portcullis_controlplane_store_request_duration_seconds",
			Help:    "Time of one store request, by operation and outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"op", "outcome"}),
		apiCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_controlplane_api_requests_total",
			Help: "API calls by transport (grpc, http), method (Service/Method) and gRPC code.",
		}, []string{"transport", "method", "code"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_controlplane_leader",
			Help: "1 while this replica leads (runs the background jobs), else 0.",
		}),
		auditDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_controlplane_audit_unauthenticated_dropped_total",
			Help: "Refused unauthenticated calls not written to the audit log because they came faster than its rate limit.",
		}),
	}
	for _, c := range []prometheus.Collector{m.storeLatency, m.apiCalls, m.leader, m.auditDropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// shortMethod turns "/portcullis.controlplane.v1alpha1.Resources/Apply" into
// "Resources/Apply".
func shortMethod(full string) string {
	full = strings.TrimPrefix(full, "/")
	svc, method, ok := strings.Cut(full, "/")
	if !ok {
		return full
	}
	if i := strings.LastIndexByte(svc, '.'); i >= 0 {
		svc = svc[i+1:]
	}
	return svc + "/" + method
}

func (m *metrics) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		m.apiCalls.WithLabelValues("grpc", shortMethod(info.FullMethod), status.Code(err).String()).Inc()
		return resp, err
	}
}

func (m *metrics) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		m.apiCalls.WithLabelValues("grpc", shortMethod(info.FullMethod), status.Code(err).String()).Inc()
		return err
	}
}

func (m *metrics) observeHTTP(method string, code codes.Code) {
	m.apiCalls.WithLabelValues("http", "Resources/"+method, code.String()).Inc()
}

// timedStore measures every request/response call of the store. Watch, Lock and
// Campaign wait by design and are passed through untimed.
type timedStore struct {
	store.Store
	latency *prometheus.HistogramVec
}

var _ store.Store = (*timedStore)(nil)

func (s *timedStore) observe(op string, start time.Time, err error) {
	outcome := "ok"
	switch {
	case err == nil:
	case isExpected(err):
		outcome = "expected" // not found, conflict: answers, not failures
	default:
		outcome = "error"
	}
	s.latency.WithLabelValues(op, outcome).Observe(time.Since(start).Seconds())
}

func isExpected(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict)
}

func (s *timedStore) Get(ctx context.Context, key string) (store.KV, error) {
	start := time.Now()
	kv, err := s.Store.Get(ctx, key)
	s.observe("get", start, err)
	return kv, err
}

func (s *timedStore) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	start := time.Now()
	kvs, rev, err := s.Store.List(ctx, prefix)
	s.observe("list", start, err)
	return kvs, rev, err
}

func (s *timedStore) Put(ctx context.Context, key string, value []byte, expect int64) (int64, error) {
	start := time.Now()
	rev, err := s.Store.Put(ctx, key, value, expect)
	s.observe("put", start, err)
	return rev, err
}

func (s *timedStore) PutWithTTL(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error) {
	start := time.Now()
	rev, err := s.Store.PutWithTTL(ctx, key, value, ttl)
	s.observe("put_ttl", start, err)
	return rev, err
}

func (s *timedStore) Delete(ctx context.Context, key string, expect int64) error {
	start := time.Now()
	err := s.Store.Delete(ctx, key, expect)
	s.observe("delete", start, err)
	return err
}
