// Package gateway runs the routing core in one role (ingress, egress or sidecar):
// it loads the config, compiles it into a snapshot, serves the listeners, swaps in
// new snapshots on reload (SIGHUP or a changed file) and refuses bad ones while the
// running one keeps serving (SM-DR5), and serves the admin listener.
//
// It is not for anything a request touches; that is gateway/snapshot and below.
package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/portcullis/portcullis/gateway/admin"
	"github.com/portcullis/portcullis/gateway/certs"
	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/listener"
	"github.com/portcullis/portcullis/gateway/observe"
	"github.com/portcullis/portcullis/gateway/snapshot"
)

// Roles.
const (
	RoleIngress = "ingress"
	RoleEgress  = "egress"
	RoleSidecar = "sidecar"
)

// Options configure a Gateway. Every field documents its zero value.
type Options struct {
	// Role is ingress, egress or sidecar. Required.
	Role string
	// ConfigPaths are files or directories of YAML resources (static mode).
	ConfigPaths []string
	// Dynamic means the config comes from Apply calls (a control plane, see
	// gateway/cpclient) instead of files: Start loads nothing, the gateway has no
	// listeners and is not ready until the first Apply succeeds, and Reload and
	// SIGHUP do nothing. ConfigPaths must then be empty.
	Dynamic bool
	// AdminAddr is the admin listener's address. Empty: no admin listener.
	AdminAddr string
	// DataDir holds local state. Empty: none is kept.
	DataDir string
	// ControlPlaneCertStorage keeps the ACME state of the listeners whose
	// tls.acme.storage is {controlPlane: true}: gateway/certs/cpstorage over the
	// proxy's control-plane connection. Nil: such listeners are refused, as in a
	// proxy run from files.
	ControlPlaneCertStorage certmagic.Storage
	// Logger is the process logger. Nil: JSON to stderr.
	Logger *slog.Logger
	// AccessLogger receives access-log records. Nil: Logger.
	AccessLogger *slog.Logger
	// PollInterval is how often config files are checked for changes. Zero: 2s;
	// negative: never (reload on SIGHUP or Reload only).
	PollInterval time.Duration
	// ShutdownGrace bounds how long draining listeners wait for requests. Zero: 30s.
	ShutdownGrace time.Duration
}

// Gateway is one running proxy.
type Gateway struct {
	opts Options
	log  *slog.Logger
	obs  *observe.Observer

	current atomic.Pointer[snapshot.Snapshot]
	ready   atomic.Bool

	mu      sync.Mutex // serialises Apply
	servers map[string]*serverEntry
	digest  string
	stamp   string   // file stamps at the last load
	watched []string // config files and the files they name
	admin   *admin.Server

	acme         map[string]*acmeEntry            // certificate managers by listener key (acme.go)
	acmeManagers atomic.Pointer[[]*certs.Manager] // the same, for the plain-HTTP listeners' HTTP-01 answers
}

type serverEntry struct {
	digest string // of the spec
	files  string // of the TLS files' contents
	srv    *listener.Server
}

// New makes a gateway; it serves nothing until Start.
func New(opts Options) (*Gateway, error) {
	switch opts.Role {
	case RoleIngress, RoleEgress, RoleSidecar:
	default:
		return nil, fmt.Errorf("unknown role %q", opts.Role)
	}
	if opts.Dynamic && len(opts.ConfigPaths) > 0 {
		return nil, errors.New("config paths were given to a gateway whose config comes from Apply (Dynamic)")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 30 * time.Second
	}
	log := opts.Logger.With("role", opts.Role)
	host, _ := os.Hostname()
	g := &Gateway{
		opts:    opts,
		log:     log,
		obs:     observe.New(observe.Options{Role: opts.Role, Node: host, Logger: opts.Logger, AccessLogger: opts.AccessLogger}),
		servers: map[string]*serverEntry{},
	}
	if err := g.obs.Registry().Register(newStateCollector(g, opts.Role)); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return g, nil
}

// Observer is the gateway's metrics, logs and tracing.
func (g *Gateway) Observer() *observe.Observer { return g.obs }

// Start loads the config and starts the admin listener and every listener. A bad
// initial config is an error: there is nothing to fall back to.
func (g *Gateway) Start() error {
	if g.opts.AdminAddr != "" {
		a, err := admin.Listen(g.opts.AdminAddr, admin.New(g.obs.Handler(), g), g.log)
		if err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		g.admin = a
	}
	if g.opts.Dynamic {
		return nil // the first config arrives through Apply
	}
	if err := g.Reload(); err != nil {
		return err
	}
	return nil
}

// AdminAddr is the bound admin address ("" without an admin listener).
func (g *Gateway) AdminAddr() string {
	if g.admin == nil {
		return ""
	}
	return g.admin.Addr()
}

// Reload reads the config files again and applies them. An error means the new
// config was refused and the running one is still serving.
func (g *Gateway) Reload() error {
	if g.opts.Dynamic {
		return errors.New("the config comes from the control plane; there are no files to reload")
	}
	set, raw, err := config.LoadFiles(g.opts.ConfigPaths...)
	if err != nil {
		g.refused("", err)
		return err
	}
	// The files the config names (certificates, keys) are part of its version: a
	// certificate renewed in place is picked up by a reload, and watched like the
	// config files themselves.
	files := set.ReferencedFiles()
	raw = append(raw, fileContents(files)...)
	g.mu.Lock()
	g.watched = append(append([]string(nil), g.opts.ConfigPaths...), files...)
	g.stamp = fileStamp(g.watched)
	g.mu.Unlock()
	return g.Apply(set, raw)
}

// fileContents is the named files' bytes, each after its name, for a digest.
func fileContents(paths []string) []byte {
	var b []byte
	for _, p := range paths {
		data, _ := os.ReadFile(p) // a missing file fails later, at compile, with its field
		b = append(b, p...)
		b = append(b, 0)
		b = append(b, data...)
		b = append(b, 0)
	}
	return b
}

func (g *Gateway) refused(version string, err error) {
	g.obs.ConfigReload("refused", version, err) // logs the reason
}

// Apply compiles set and, if every step succeeds, swaps it in. raw identifies the
// config (its digest is the version); identical bytes are not applied twice.
func (g *Gateway) Apply(set *config.Set, raw []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	version := snapshot.Digest(raw)
	prev := g.current.Load()
	if prev != nil && version == g.digest {
		g.obs.ConfigReload("unchanged", version, nil)
		return nil
	}
	next, err := snapshot.Compile(set, version, prev, snapshot.Deps{Logger: g.log, Observer: g.obs, Role: g.opts.Role, DataDir: g.opts.DataDir, FromControlPlane: g.opts.Dynamic})
	if err != nil {
		g.refused(version, err)
		return err
	}
	if err := g.obs.Configure(next.Telemetry); err != nil {
		next.Discard(prev)
		err = fmt.Errorf("telemetry: %w", err)
		g.refused(version, err)
		return err
	}
	plan := g.planACME(next)
	started, replaced, err := g.startListeners(next, plan)
	if err == nil {
		err = g.buildACME(next, plan, started)
	}
	if err != nil {
		for _, s := range started {
			s.Shutdown(context.Background())
		}
		next.Discard(prev)
		g.refused(version, err)
		return err
	}
	next.Start(prev)
	g.current.Store(next)
	g.commitACME(plan)
	g.digest = version
	for k, e := range started {
		g.servers[k] = &serverEntry{digest: listenerDigest(next.Listeners[k]), files: tlsFilesDigest(next.Listeners[k]), srv: e}
	}
	for _, k := range g.removedListeners(next) {
		replaced = append(replaced, g.servers[k].srv)
		delete(g.servers, k)
	}
	for _, s := range replaced {
		go g.drain(s)
	}
	if prev != nil {
		prev.Retire(next)
	}
	g.ready.Store(true)
	g.obs.ConfigReload("applied", version, nil)
	g.log.Debug("config applied", "version", version, "resources", set.Len(), "listeners", len(next.Listeners))
	return nil
}

func listenerDigest(spec config.ListenerSpec) string {
	b, _ := yamlish(spec)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func tlsFilesDigest(spec config.ListenerSpec) string {
	if spec.TLS == nil {
		return ""
	}
	paths := []string{spec.TLS.ClientCAFile}
	for _, c := range spec.TLS.Certificates {
		paths = append(paths, c.CertFile, c.KeyFile)
	}
	sum := sha256.Sum256(fileContents(paths))
	return hex.EncodeToString(sum[:8])
}

// startListeners starts a server for every listener that is new or whose spec
// changed. It returns the new servers by key, and the old servers they replace.
func (g *Gateway) startListeners(next *snapshot.Snapshot, plan *acmePlan) (map[string]*listener.Server, []*listener.Server, error) {
	started := map[string]*listener.Server{}
	var replaced []*listener.Server
	var rotate []string
	for key, spec := range next.Listeners {
		d := listenerDigest(spec)
		old := g.servers[key]
		if old != nil && old.digest == d {
			if old.files != tlsFilesDigest(spec) {
				rotate = append(rotate, key) // same spec, renewed certificate files
			}
			continue
		}
		srv, err := listener.New(key, spec, g.handler(key), g.listenerOptions(key, spec, plan))
		if err != nil {
			return started, nil, fmt.Errorf("listener %s: %w", key, err)
		}
		if err := srv.Start(); err != nil {
			return started, nil, fmt.Errorf("listener %s: %w", key, err)
		}
		started[key] = srv
		if old != nil {
			replaced = append(replaced, old.srv)
		}
	}
	// Certificates renewed in place are swapped into the running listener for new
	// handshakes: no rebind, no dropped connection.
	for _, key := range rotate {
		spec := next.Listeners[key]
		if err := g.servers[key].srv.ReloadTLS(*spec.TLS); err != nil {
			return started, nil, fmt.Errorf("listener %s: tls: %w", key, err)
		}
		g.servers[key].files = tlsFilesDigest(spec)
		g.log.Info("listener certificates reloaded", "listener", key)
	}
	return started, replaced, nil
}

func (g *Gateway) removedListeners(next *snapshot.Snapshot) []string {
	var out []string
	for k := range g.servers {
		if _, ok := next.Listeners[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

func (g *Gateway) drain(s *listener.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.ShutdownGrace)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		g.log.Warn("listener did not drain in time", "err", err)
	}
}

// handler is the stable handler of one listener: it serves each request on the
// snapshot that is current when the request starts, and holds that snapshot until
// the request ends.
func (g *Gateway) handler(key string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s *snapshot.Snapshot
		for {
			s = g.current.Load()
			s.Acquire()
			if g.current.Load() == s {
				break
			}
			s.Release() // swapped meanwhile: take the new one
		}
		defer s.Release()
		s.Serve(key, w, r)
	})
}

// Ready implements admin.State.
func (g *Gateway) Ready() bool { return g.ready.Load() }

// Config implements admin.State.
func (g *Gateway) Config() (string, any, any) {
	s := g.current.Load()
	if s == nil {
		return "", nil, nil
	}
	return s.Version, s.Set.Documents(), s.Upstreams()
}

// Run serves until ctx ends, reloading on SIGHUP and on file changes, then shuts
// down gracefully.
func (g *Gateway) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if g.opts.PollInterval > 0 && len(g.opts.ConfigPaths) > 0 {
		t := time.NewTicker(g.opts.PollInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return g.Shutdown()
		case <-hup:
			if g.opts.Dynamic {
				g.log.Info("SIGHUP ignored: the config comes from the control plane")
				continue
			}
			g.log.Info("SIGHUP: reloading config")
			g.Reload()
		case <-tick:
			g.mu.Lock()
			changed := fileStamp(g.watched) != g.stamp
			g.mu.Unlock()
			if changed {
				g.log.Info("config files changed: reloading")
				g.Reload()
			}
		}
	}
}

// Shutdown stops the listeners (draining in-flight requests), the admin listener
// and the snapshot.
func (g *Gateway) Shutdown() error {
	g.ready.Store(false)
	g.mu.Lock()
	defer g.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range g.servers {
		wg.Add(1)
		go func(s *listener.Server) { defer wg.Done(); g.drain(s) }(e.srv)
	}
	wg.Wait()
	g.servers = map[string]*serverEntry{}
	g.closeACME()
	if s := g.current.Load(); s != nil {
		s.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	if g.admin != nil {
		errs = append(errs, g.admin.Shutdown(ctx))
	}
	errs = append(errs, g.obs.Shutdown(ctx))
	return errors.Join(errs...)
}

// fileStamp summarises the config files' names, sizes and modification times.
func fileStamp(paths []string) string {
	h := sha256.New()
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(h, "%s:missing;", p)
			continue
		}
		if st.IsDir() {
			ents, _ := os.ReadDir(p)
			for _, e := range ents {
				if i, err := e.Info(); err == nil {
					fmt.Fprintf(h, "%s/%s:%d:%d;", p, e.Name(), i.Size(), i.ModTime().UnixNano())
				}
			}
			continue
		}
		fmt.Fprintf(h, "%s:%d:%d;", p, st.Size(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ListenerAddr returns the bound address of a listener ("namespace/name"), useful
// when the config asked for port 0.
func (g *Gateway) ListenerAddr(key string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e := g.servers[key]; e != nil {
		return e.srv.Addr().String()
	}
	return ""
}
