// Package registry is the control plane's service registry (SM-DR26, MS-SS-3):
// the endpoints of services, registered by a third party (the sidecar that
// checks its app, or an operator), kept alive by heartbeats, and, for endpoints
// registered with a health-check path, probed by the leading replica. Clusters
// that name a registry service get its healthy endpoints in every push.
//
// A Registry implements the Registry gRPC service (Register, Deregister, Lookup)
// and answers the push server from memory: Endpoints and Changed never touch the
// store. Every replica follows the store with a watch, so every replica, and
// every push, agrees on what is healthy; only the leader runs RunHealthChecks,
// and its verdicts reach the others through the store.
//
// It is not for: authenticating callers (the API server puts an auth.Principal in
// the context), deciding an operator's roles (Options.Authorize does), or
// pushing config (the push server calls Endpoints and waits on Changed).
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/gateway/config"
)

// Defaults of Options.
const (
	DefaultHealthInterval         = 5 * time.Second
	DefaultHealthTimeout          = time.Second
	DefaultUnhealthyThreshold     = 2
	DefaultHealthyThreshold       = 2
	DefaultMaxConcurrentProbes    = 32
	DefaultMaxEndpointsPerService = 1000
)

// Options configure a Registry. Store is required; every other field has a
// default.
type Options struct {
	Store store.Store
	// Logger receives registrations refused, health changes and store trouble;
	// nil discards them.
	Logger *slog.Logger
	// Registerer receives the registry's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Authorize decides whether a caller that is not a proxy (a person, a client
	// certificate) may perform verb ("read" or "write") on a registry service.
	// It returns nil to allow; an error to refuse (a gRPC status error is passed
	// on as is, any other error becomes PermissionDenied). Nil refuses every
	// caller that is not a proxy.
	Authorize func(ctx context.Context, verb, namespace, service string) error
	// AllowLoopback accepts loopback addresses (127.0.0.0/8, ::1). Off by
	// default: a proxy would dial its own host. For tests, whose apps listen on
	// loopback.
	AllowLoopback bool
	// HealthInterval is how often the leader probes each endpoint registered
	// with a health_check_path (default 5s); HealthTimeout bounds one probe
	// (default 1s, at most HealthInterval).
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	// UnhealthyThreshold consecutive failed probes take a healthy endpoint out of
	// load balancing (default 2); HealthyThreshold consecutive good ones bring it
	// back (default 2). A new registration needs one good probe.
	UnhealthyThreshold int
	HealthyThreshold   int
	// MaxConcurrentProbes bounds the probes in flight (default 32).
	MaxConcurrentProbes int
	// MaxEndpointsPerService bounds one service's registrations (default 1000),
	// so that one registrant cannot fill the store.
	MaxEndpointsPerService int
}

// Verbs passed to Options.Authorize.
const (
	VerbRead  = "read"
	VerbWrite = "write"
)

// Registry is the service registry of one control-plane replica.
//
// Lifecycle: New checks the options, registers the metrics and starts following
// the store; Ready is closed once the first listing is in memory (Endpoints
// answers "unknown" before). The gRPC methods, Endpoints and Changed may be used
// from any goroutine. RunHealthChecks runs on the leader until its ctx ends.
// Close stops following the store and unregisters the metrics.
type Registry struct {
	cpv1.UnimplementedRegistryServer

	opts    Options
	st      store.Store
	log     *slog.Logger
	view    *view
	metrics *metrics

	ready    chan struct{}
	pending  atomic.Int32 // first listings still to come
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	checking atomic.Bool
}

var _ cpv1.RegistryServer = (*Registry)(nil)

// New checks opts, registers the metrics and starts following the store.
func New(opts Options) (*Registry, error) {
	if opts.Store == nil {
		return nil, errors.New("registry: Options.Store is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	setDefault(&opts.HealthInterval, DefaultHealthInterval, "HealthInterval", &errs)
	setDefault(&opts.HealthTimeout, DefaultHealthTimeout, "HealthTimeout", &errs)
	setDefault(&opts.UnhealthyThreshold, DefaultUnhealthyThreshold, "UnhealthyThreshold", &errs)
	setDefault(&opts.HealthyThreshold, DefaultHealthyThreshold, "HealthyThreshold", &errs)
	setDefault(&opts.MaxConcurrentProbes, DefaultMaxConcurrentProbes, "MaxConcurrentProbes", &errs)
	setDefault(&opts.MaxEndpointsPerService, DefaultMaxEndpointsPerService, "MaxEndpointsPerService", &errs)
	if opts.HealthTimeout > opts.HealthInterval {
		errs = append(errs, fmt.Errorf("registry: Options.HealthTimeout %v is longer than HealthInterval %v", opts.HealthTimeout, opts.HealthInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r := &Registry{
		opts:  opts,
		st:    opts.Store,
		log:   opts.Logger,
		view:  newView(opts.AllowLoopback, opts.Logger),
		ready: make(chan struct{}),
	}
	r.metrics = newMetrics(r.view)
	if opts.Registerer != nil {
		if err := r.metrics.register(opts.Registerer); err != nil {
			return nil, err
		}
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.pending.Store(2)
	listed := func() {
		if r.pending.Add(-1) == 0 {
			close(r.ready)
		}
	}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		follow(r.ctx, r.st, r.log, Prefix, r.view.replaceRecords, r.view.applyRecords, listed)
	}()
	go func() {
		defer r.wg.Done()
		follow(r.ctx, r.st, r.log, HealthPrefix, r.view.replaceVerdicts, r.view.applyVerdicts, listed)
	}()
	return r, nil
}

// setDefault puts def in an unset option and refuses a negative one.
func setDefault[T int | time.Duration](v *T, def T, name string, errs *[]error) {
	switch {
	case *v < 0:
		*errs = append(*errs, fmt.Errorf("registry: Options.%s must not be negative", name))
	case *v == 0:
		*v = def
	}
}

// Ready is closed once the registrations and verdicts in the store are in
// memory. A push server should wait for it: before, every service is unknown.
func (r *Registry) Ready() <-chan struct{} { return r.ready }

// Close stops following the store and unregisters the metrics. RunHealthChecks
// returns when Close is called.
func (r *Registry) Close() error {
	r.cancel()
	r.wg.Wait()
	if r.opts.Registerer != nil {
		r.metrics.unregister(r.opts.Registerer)
	}
	return nil
}

// Endpoints returns the healthy endpoints of a service, sorted by address (so
// that a push made of them is the same bytes while they do not change), and
// whether the service has any registration at all, healthy or not. It reads
// memory only, with one atomic load; the slice is the caller's.
func (r *Registry) Endpoints(namespace, service string) ([]config.Endpoint, bool) {
	eps, ok := (*r.view.published.Load())[serviceKey{namespace, service}]
	return slices.Clone(eps), ok
}

// Changed returns a channel that is closed at the next change of the healthy
// endpoints of any service. Take it before reading Endpoints, and a new one after
// it fires: changes in between coalesce into one, none is missed. Any number of
// goroutines may wait.
func (r *Registry) Changed() <-chan struct{} { return r.view.changed.wait() }
