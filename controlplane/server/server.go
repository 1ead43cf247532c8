// Package server assembles the control-plane daemon: it opens the store (an
// embedded etcd member, or an etcd cluster shared by replicas), follows the
// stored resources, and serves, over TLS, the gRPC APIs (admin Resources, config
// push, registry, the ingress proxies' certificate storage) on one port and the
// HTTP/JSON admin API with /metrics and /healthz on another. Every call is
// authenticated by the auth package's interceptors or middleware; admin calls are
// authorized and audited by the admin package. Replicas elect a leader through
// the store; the leader runs the background jobs (registry health checks and any
// OnLeader hook).
//
// Why two ports: gRPC is served by grpc-go's own HTTP/2 transport, which is what
// keeps the proxies' long-lived push streams cheap and lets keepalive be
// enforced; net/http's server (for JSON, metrics and health) cannot share it
// without grpc-go's ServeHTTP bridge, which lacks both. Two ports also let an
// operator expose the JSON API and metrics to a different network than proxies.
//
// It is not for: the proxies' side (gateway/cpclient), or deciding anything the
// packages it assembles decide.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/portcullis/portcullis/controlplane/admin"
	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/certstore"
	"github.com/portcullis/portcullis/controlplane/push"
	"github.com/portcullis/portcullis/controlplane/registry"
	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/controlplane/store"
)

// Options configure a Server.
type Options struct {
	// Config is the checked configuration (LoadConfig or DevConfig). Required.
	Config *Config
	// DataDir holds the embedded store when the config names no directory.
	DataDir string
	// Logger; nil discards.
	Logger *slog.Logger
	// OnLeader hooks run, each in its own goroutine, while this replica leads,
	// with a context that ends when leadership does. The registry's health checks
	// are always one.
	OnLeader []func(ctx context.Context)
	// Store, when set, is used instead of the one the config names; the caller
	// keeps it and closes it after the server.
	Store store.Store
	// AllowLoopbackEndpoints lets the registry accept loopback addresses (tests).
	AllowLoopbackEndpoints bool
}

// Server is one control-plane replica. New builds it and binds its listeners;
// Run serves until its context ends, then stops everything New started.
type Server struct {
	cfg      *Config
	log      *slog.Logger
	st       store.Store
	ownStore store.Store // closed by Run; nil when the caller passed Options.Store
	reg      *prometheus.Registry
	m        *metrics

	ctx    context.Context // lives until Run returns; bounds the index and hooks
	cancel context.CancelFunc

	index    *resources.Index
	registry *registry.Registry
	push     *push.Server
	admin    *admin.Service
	certs    *certstore.Service
	election *election

	grpcSrv *grpc.Server
	httpSrv *http.Server
	grpcLn  net.Listener
	httpLn  net.Listener
}

// New opens the store, builds every service and binds the listeners. On error,
// whatever it had started is stopped.
func New(ctx context.Context, opts Options) (_ *Server, err error) {
	cfg := opts.Config
	if cfg == nil {
		return nil, errors.New("server: Options.Config is required")
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: opts.Logger, reg: prometheus.NewRegistry()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			s.shutdown()
		}
	}()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if s.m, err = newMetrics(s.reg); err != nil {
		return nil, err
	}
	raw := opts.Store
	if raw == nil {
		if raw, err = openStore(ctx, cfg.Store, opts.DataDir, s.log); err != nil {
			return nil, err
		}
		s.ownStore = raw
	}
	s.st = &timedStore{Store: raw, latency: s.m.storeLatency}

	s.index = resources.NewIndex(s.ctx, s.st, s.log.With("component", "index"))
	policy, err := cfg.policy()
	if err != nil {
		return nil, err
	}
	audit := auth.NewAuditLog(s.st, nil)
	authn, err := s.authenticator(ctx, audit)
	if err != nil {
		return nil, err
	}
	if s.registry, err = registry.New(registry.Options{
		Store: s.st, Logger: s.log.With("component", "registry"), Registerer: s.reg,
		Authorize: registryAuthorizer(policy), AllowLoopback: opts.AllowLoopbackEndpoints,
	}); err != nil {
		return nil, err
	}
	if s.push, err = push.NewServer(push.Options{
		Index: s.index, Store: s.st, Logger: s.log, Registerer: s.reg,
		Endpoints: s.registry.Endpoints, EndpointsChanged: s.forwardChanges(),
	}); err != nil {
		return nil, err
	}
	if s.admin, err = admin.New(admin.Options{
		Store: s.st, Policy: policy, Audit: audit, Status: s.push,
		Leader:   func(ctx context.Context) string { return leaderName(ctx, s.st) },
		Snapshot: snapshotter(raw),
		Logger:   s.log.With("component", "admin"),
	}); err != nil {
		return nil, err
	}
	if s.certs, err = certstore.New(certstore.Options{
		Store: s.st, Logger: s.log.With("component", "certstore"), Registerer: s.reg,
	}); err != nil {
		return nil, err
	}
	hooks := append([]func(context.Context){func(ctx context.Context) {
		if err := s.registry.RunHealthChecks(ctx); err != nil {
			s.log.Error("registry health checks stopped", "err", err)
		}
	}}, opts.OnLeader...)
	s.election = &election{st: s.st, name: replicaName(cfg), log: s.log, gauge: s.m.leader, hooks: hooks, retry: time.Second}

	if err := s.listen(authn); err != nil {
		return nil, err
	}
	return s, nil
}

// snapshotter returns the store's snapshot function, nil if it has none.
func snapshotter(st store.Store) func(ctx context.Context, w io.Writer) (int64, error) {
	if s, ok := st.(interface {
		Snapshot(ctx context.Context, w io.Writer) (int64, error)
	}); ok {
		return s.Snapshot
	}
	return nil
}

func replicaName(cfg *Config) string {
	if cfg.Name != "" {
		return cfg.Name
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "controlplane"
}

// authenticator builds the authenticator; refused calls are audited, at most
// 10 a second (bursts of 50), so a flood of bad credentials cannot flood the
// store: the rest are counted in a metric.
func (s *Server) authenticator(ctx context.Context, audit *auth.AuditLog) (*auth.Authenticator, error) {
	var oidc *auth.OIDCVerifier
	if c := s.cfg.OIDC; c != nil {
		client := &http.Client{Timeout: 10 * time.Second}
		if c.CAFile != "" {
			pool, err := loadPool(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("oidc.caFile: %w", err)
			}
			client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		}
		var err error
		oidc, err = auth.NewOIDCVerifier(auth.OIDCConfig{Issuer: c.Issuer, Audience: c.Audience, Claim: c.Claim, HTTPClient: client, Logger: s.log})
		if err != nil {
			return nil, err
		}
		go func() { _ = oidc.Discover(s.ctx) }()
	}
	opts, err := s.cfg.authOptions(oidc)
	if err != nil {
		return nil, err
	}
	limiter := rate.NewLimiter(10, 50)
	opts.OnRefused = func(ctx context.Context, r auth.Refusal) {
		if !limiter.Allow() {
			s.m.auditDropped.Inc()
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if _, err := audit.Append(actx, r.Entry()); err != nil {
			s.log.Error("audit log: a refused call could not be recorded", "method", r.Method, "err", err)
		}
	}
	return auth.NewAuthenticator(opts)
}

// registryAuthorizer decides operators' registry calls by their roles
// (RegistryEndpoint, category "registry"); proxies are decided by the registry.
func registryAuthorizer(policy *auth.Policy) func(ctx context.Context, verb, namespace, service string) error {
	return func(ctx context.Context, verb, namespace, service string) error {
		who, ok := auth.FromContext(ctx)
		if !ok {
			return status.Error(codes.Unauthenticated, "the call is not authenticated")
		}
		d := policy.Decide(who, auth.Request{Verb: auth.Verb(verb), Kind: auth.KindRegistryEndpoint, Namespace: namespace, Name: service})
		if !d.Allowed {
			return status.Error(codes.PermissionDenied, d.Reason)
		}
		return nil
	}
}

// forwardChanges turns the registry's one-shot change channels into the one
// channel the push server waits on. The next channel is taken before the signal
// is passed on, so a change made while the push server recomputes is not missed.
func (s *Server) forwardChanges() <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		ch := s.registry.Changed()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-ch:
			}
			ch = s.registry.Changed()
			select {
			case out <- struct{}{}:
			default: // a signal is pending already
			}
		}
	}()
	return out
}

// listen builds the gRPC and HTTP servers and binds their listeners.
func (s *Server) listen(authn *auth.Authenticator) error {
	tlsCfg, err := serverTLS(s.cfg.TLS, s.log)
	if err != nil {
		return err
	}
	grpcOpts := append([]grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.ChainUnaryInterceptor(s.m.unary(), authn.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(s.m.stream(), authn.StreamInterceptor()),
	}, push.ServerOptions()...)
	s.grpcSrv = grpc.NewServer(grpcOpts...)
	cpv1.RegisterResourcesServer(s.grpcSrv, s.admin)
	cpv1.RegisterConfigPushServer(s.grpcSrv, s.push)
	cpv1.RegisterRegistryServer(s.grpcSrv, s.registry)
	cpv1.RegisterCertStorageServer(s.grpcSrv, s.certs)
	addr := s.cfg.Listen
	if addr == "" {
		addr = "127.0.0.1:9443"
	}
	if s.grpcLn, err = net.Listen("tcp", addr); err != nil {
		return fmt.Errorf("listen: %w", err)
	}

	httpAddr := s.cfg.HTTPListen
	if httpAddr == "off" {
		return nil
	}
	if httpAddr == "" {
		httpAddr = "127.0.0.1:9444"
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", s.admin.Handler(admin.HTTPOptions{Authenticator: authn, Observe: s.m.observeHTTP}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.healthz)
	s.httpSrv = &http.Server{
		Handler:           mux,
		TLSConfig:         tlsCfg.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.httpLn, err = net.Listen("tcp", httpAddr); err != nil {
		return fmt.Errorf("httpListen: %w", err)
	}
	return nil
}

// healthz answers 200 when the resource index has its first listing and the store
// answers a read within two seconds, 503 otherwise.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.index.Ready():
	default:
		http.Error(w, "not ready: the resource index has not listed the store yet", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.st.Get(ctx, LeaderKey); err != nil && !errors.Is(err, store.ErrNotFound) {
		http.Error(w, "not ready: the store does not answer", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// GRPCAddr is the bound gRPC address.
func (s *Server) GRPCAddr() string { return s.grpcLn.Addr().String() }

// HTTPAddr is the bound HTTP address, "" when disabled.
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Run serves until ctx ends or a listener fails, then stops gracefully: push
// streams end first (proxies keep what they run and reconnect to another
// replica), calls in flight get a few seconds, leadership is resigned.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.election.run(s.ctx) }()
	go func() { errc <- s.grpcSrv.Serve(s.grpcLn) }()
	if s.httpSrv != nil {
		go func() {
			if err := s.httpSrv.ServeTLS(s.httpLn, "", ""); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	s.log.Info("control plane serving", "grpc", s.GRPCAddr(), "http", s.HTTPAddr(), "replica", s.election.name)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		s.log.Error("a listener failed; stopping", "err", err)
	}
	s.shutdown()
	wg.Wait()
	return err
}

// shutdown stops everything in the reverse order of New.
func (s *Server) shutdown() {
	if s.push != nil {
		s.push.Close()
	}
	if s.certs != nil {
		s.certs.Close() // held ACME locks are released; their proxies see the stream end
	}
	if s.grpcSrv != nil {
		done := make(chan struct{})
		go func() { s.grpcSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			s.grpcSrv.Stop()
		}
	}
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.httpSrv.Shutdown(ctx)
		cancel()
	}
	// Stopping the servers closes only the listeners they served; New may have
	// failed before serving.
	for _, ln := range []net.Listener{s.grpcLn, s.httpLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	s.cancel() // the election resigns; the index stops
	if s.registry != nil {
		_ = s.registry.Close()
	}
	if s.ownStore != nil {
		if err := s.ownStore.Close(); err != nil {
			s.log.Warn("closing the store", "err", err)
		}
	}
}
