package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/portcullis/portcullis/gateway/config"
)

// Options are the collaborators of a Manager. Every field documents its zero value.
type Options struct {
	// Storage holds the ACME account, keys, certificates, locks and pending
	// challenges. Managers (in one process or in replicas) that share it place
	// one order per name and answer each other's challenges. Required.
	Storage certmagic.Storage
	// Logger gets the Manager's messages and certmagic's. Nil discards.
	Logger *slog.Logger
	// HTTPChallengeAddr is the host:port of the plain-HTTP listener that answers
	// HTTP-01 (with HandleHTTPChallenge). certmagic opens a challenge listener of
	// its own only when nothing listens there, so pointing it at our listener
	// keeps it from binding anything. Empty: HTTP-01 is not offered.
	HTTPChallengeAddr string
	// TLSALPNChallengeAddr is the host:port of the HTTPS listener that answers
	// TLS-ALPN-01 (with GetCertificate), as HTTPChallengeAddr. Empty: TLS-ALPN-01
	// is not offered.
	TLSALPNChallengeAddr string
	// DisableOCSPStapling stops stapling OCSP responses to the managed
	// certificates (the listener's tls.ocspStapling: false). Zero: a certificate
	// that names an OCSP responder gets its response stapled; certmagic fetches
	// it when it loads the certificate, keeps it in the storage and refreshes it
	// hourly (and when a handshake finds an on-demand certificate's staple stale).
	DisableOCSPStapling bool
	// RenewCheckInterval is how often certificates are checked for renewal (and
	// renewed when due). Zero: certmagic's default, 10 minutes.
	RenewCheckInterval time.Duration
}

// FileStorage is certmagic's storage in the directory dir: files, with lock
// files that serialise issuance between processes sharing the directory.
func FileStorage(dir string) certmagic.Storage { return &certmagic.FileStorage{Path: dir} }

// Manager obtains and renews the certificates of one listener's tls.acme.
// Its lifecycle: New (nothing is obtained), Start (the domains are obtained in
// the background; on-demand issuance is allowed), Close (background work stops;
// certificates already in memory are still served).
type Manager struct {
	log         *slog.Logger
	cache       *certmagic.Cache
	managed     *certmagic.Config // obtains and renews: no on-demand
	handshake   *certmagic.Config // serves handshakes: managed, or with OnDemand
	issuer      *certmagic.ACMEIssuer
	base        certmagic.Config // template of every config of this Manager
	domains     []string
	allow       allowList
	onDemand    bool
	http01      bool
	renewBefore time.Duration

	ctx    context.Context // cancelled by Close: stops obtain and renew jobs
	cancel context.CancelFunc
	state  atomic.Int32
	close  sync.Once
	status statusBook

	mu     sync.Mutex
	ratios map[int]*certmagic.Config // renewBefore: configs by renewal-window percent
}

const (
	stateNew int32 = iota
	stateStarted
	stateClosed
)

var _ interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
} = (*Manager)(nil)

// New checks spec and builds a Manager; it contacts nobody. Errors name the
// field of the listener spec that is wrong ("tls.acme.caRootFile: ...").
func New(spec config.ACME, opts Options) (*Manager, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{log: log.With("component", "acme", "directory", spec.Directory)}
	if spec.Directory == "" {
		return nil, errors.New("tls.acme.directory: required")
	}
	if opts.Storage == nil {
		return nil, errors.New("tls.acme.storage: no storage given")
	}
	var roots *x509.CertPool
	if spec.CARootFile != "" {
		pem, err := os.ReadFile(spec.CARootFile)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.caRootFile: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme.caRootFile: no PEM certificate in %s", spec.CARootFile)
		}
	}
	http01, tlsALPN01, err := m.challenges(spec.Challenges, opts)
	if err != nil {
		return nil, err
	}
	m.http01 = http01
	for i, d := range spec.Domains {
		if d = normalizeName(d); d == "" {
			return nil, fmt.Errorf("tls.acme.domains[%d]: empty", i)
		}
		m.domains = append(m.domains, d)
	}
	if spec.OnDemand != nil {
		m.onDemand = true
		if m.allow, err = compileAllowList("tls.acme.onDemand.allow", spec.OnDemand.Allow); err != nil {
			return nil, err
		}
		m.allow.add(m.domains) // a configured domain may also be obtained at a handshake
	}
	if spec.RenewBefore != nil {
		m.renewBefore = spec.RenewBefore.D()
	}
	listenHost, httpPort, tlsPort, err := challengePorts(opts.HTTPChallengeAddr, opts.TLSALPNChallengeAddr, http01, tlsALPN01)
	if err != nil {
		return nil, err
	}

	zl := newZapLogger(m.log.Handler())
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.base = certmagic.Config{
		OnEvent:        m.onEvent,
		ShouldEmitFunc: shouldEmit,
		Storage:        opts.Storage,
		Logger:         zl,
		OCSP:           certmagic.OCSPConfig{DisableStapling: opts.DisableOCSPStapling},
	}
	if m.renewBefore > 0 {
		// Renewal by age is decided per certificate (configForCert); the shared
		// configs renew only in certmagic's emergency window, so that a restart or
		// a handshake does not renew earlier than renewBefore asks.
		m.base.RenewalWindowRatio = 1.0 / 50
	}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   m.configForCert,
		RenewCheckInterval: opts.RenewCheckInterval,
		Logger:             zl,
	})
	m.managed = certmagic.New(m.cache, m.base)
	m.issuer = certmagic.NewACMEIssuer(m.managed, certmagic.ACMEIssuer{
		CA:                      spec.Directory,
		Email:                   spec.Email,
		Agreed:                  true, // the operator agreed by configuring the CA; nobody is there to ask
		TrustedRoots:            roots,
		DisableHTTPChallenge:    !http01,
		DisableTLSALPNChallenge: !tlsALPN01,
		ListenHost:              listenHost,
		AltHTTPPort:             httpPort,
		AltTLSALPNPort:          tlsPort,
		Logger:                  zl,
	})
	m.base.Issuers = []certmagic.Issuer{m.issuer}
	m.managed.Issuers = m.base.Issuers
	m.handshake = m.managed
	if m.onDemand {
		hs := m.base
		hs.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: m.decide}
		m.handshake = certmagic.New(m.cache, hs)
	}
	return m, nil
}

// challenges resolves the challenges to offer: the configured ones (default
// both) that have a listener to answer them.
func (m *Manager) challenges(list []string, opts Options) (http01, tlsALPN01 bool, err error) {
	http01, tlsALPN01 = len(list) == 0, len(list) == 0
	for i, c := range list {
		switch c {
		case config.ChallengeHTTP01:
			http01 = true
		case config.ChallengeTLSALPN01:
			tlsALPN01 = true
		default:
			return false, false, fmt.Errorf("tls.acme.challenges[%d]: %q is not HTTP01 or TLSALPN01", i, c)
		}
	}
	if http01 && opts.HTTPChallengeAddr == "" {
		http01 = false
		m.log.Warn("HTTP-01 is not offered: no plain-HTTP listener answers it")
	}
	if tlsALPN01 && opts.TLSALPNChallengeAddr == "" {
		tlsALPN01 = false
		m.log.Warn("TLS-ALPN-01 is not offered: no HTTPS listener answers it")
	}
	if !http01 && !tlsALPN01 {
		return false, false, errors.New("tls.acme.challenges: no listener can answer any of them (HTTP-01 needs a plain-HTTP listener)")
	}
	return http01, tlsALPN01, nil
}

// challengePorts turns the listener addresses into certmagic's ListenHost and
// ports. certmagic has one host for both; the TLS-ALPN-01 listener's is used
// when both are offered.
func challengePorts(httpAddr, tlsAddr string, http01, tlsALPN01 bool) (host string, httpPort, tlsPort int, err error) {
	split := func(field, addr string) (string, int, error) {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return "", 0, fmt.Errorf("%s: %w", field, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return "", 0, fmt.Errorf("%s: %q has no port certmagic can use", field, addr)
		}
		return h, n, nil
	}
	if http01 {
		if host, httpPort, err = split("HTTP-01 listener address", httpAddr); err != nil {
			return "", 0, 0, err
		}
	}
	if tlsALPN01 {
		if host, tlsPort, err = split("TLS-ALPN-01 listener address", tlsAddr); err != nil {
			return "", 0, 0, err
		}
	}
	return host, httpPort, tlsPort, nil
}

// Start obtains the configured domains in the background (loading them from
// storage when they are there) and allows on-demand issuance. It does not wait
// for the CA: failures are logged, counted in Stats and shown in Status, and
// retried by certmagic with backoff. A Manager starts once.
func (m *Manager) Start() error {
	if !m.state.CompareAndSwap(stateNew, stateStarted) {
		return errors.New("acme: manager already started or closed")
	}
	m.status.pending(m.domains)
	if len(m.domains) > 0 {
		if err := m.managed.ManageAsync(m.ctx, m.domains); err != nil {
			return fmt.Errorf("acme: %w", err)
		}
	}
	m.log.Info("certificate manager started", "domains", m.domains, "onDemand", m.onDemand,
		"http01", m.http01, "tlsALPN01", !m.issuer.DisableTLSALPNChallenge)
	return nil
}

// Close stops obtaining and renewing; certificates already in memory are still
// served by GetCertificate. It is safe to call more than once.
func (m *Manager) Close() error {
	m.close.Do(func() {
		m.state.Store(stateClosed)
		m.cancel()
		m.cache.Stop()
	})
	return nil
}

// GetCertificate returns the managed certificate for the handshake's SNI name,
// obtaining it first when on-demand issuance allows the name (the handshake
// waits). It answers TLS-ALPN-01 validation handshakes with the challenge
// certificate. It is the listener's CertificateSource.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, err := m.handshake.GetCertificate(hello)
	if err != nil {
		return nil, err
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return nil, fmt.Errorf("no managed certificate for %q", hello.ServerName)
	}
	return cert, nil
}

// HandleHTTPChallenge answers an HTTP-01 validation request of an order placed
// by this Manager, by another Manager of this process, or by a replica sharing
// the storage. It returns false, and writes nothing, for any other request.
func (m *Manager) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	return m.http01 && m.issuer.HandleHTTPChallenge(w, r)
}

// Renew renews the certificate for name now, even if it is not due, and serves
// the new one for new handshakes. It waits for the CA, retrying with backoff,
// until it succeeds or ctx ends. Background renewal needs no call: this is for
// operators (a suspected key compromise) and tests.
func (m *Manager) Renew(ctx context.Context, name string) error {
	name = normalizeName(name)
	var old []string
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if slices.Contains(c.Names, name) {
			old = append(old, c.Hash())
		}
	}
	if err := m.managed.RenewCertAsync(ctx, name, true); err != nil {
		return fmt.Errorf("renewing %s: %w", name, err)
	}
	cert, err := m.managed.CacheManagedCertificate(ctx, name)
	if err != nil {
		return fmt.Errorf("loading the renewed certificate for %s: %w", name, err)
	}
	m.cache.Remove(slices.DeleteFunc(old, func(h string) bool { return h == cert.Hash() }))
	return nil
}

// Status reports every name the Manager obtains or has obtained, sorted.
func (m *Manager) Status() []CertificateStatus {
	return m.status.snapshot(func(name string) time.Time {
		var t time.Time
		for _, c := range m.cache.AllMatchingCertificates(name) {
			if c.Leaf != nil && slices.Contains(c.Names, name) && c.Leaf.NotAfter.After(t) {
				t = c.Leaf.NotAfter
			}
		}
		return t
	})
}

// Stats returns the Manager's counters.
func (m *Manager) Stats() Stats {
	m.status.mu.Lock()
	defer m.status.mu.Unlock()
	return m.status.stats
}

// decide is certmagic's on-demand DecisionFunc: the compiled allow-list, and
// nothing else (no call to any endpoint during a handshake). certmagic asks it
// before loading a certificate from storage and before placing an order.
func (m *Manager) decide(_ context.Context, name string) error {
	if m.state.Load() != stateStarted {
		return errors.New("the certificate manager is not running")
	}
	if !m.allow.allows(name) {
		return fmt.Errorf("%q is not allowed by tls.acme.onDemand.allow", name)
	}
	return nil
}

// configForCert is the cache's GetConfigForCert: the config that renews cert in
// the background. It never has OnDemand set, so certificates obtained on demand
// are renewed in the background like the others rather than only when a
// handshake happens to find them due. With renewBefore, the config's renewal
// window is renewBefore as a share of cert's lifetime (in whole percent).
func (m *Manager) configForCert(cert certmagic.Certificate) (*certmagic.Config, error) {
	life := cert.Lifetime()
	if m.renewBefore <= 0 || life <= 0 {
		return m.managed, nil
	}
	pct := int(math.Ceil(100 * float64(m.renewBefore) / float64(life)))
	pct = min(max(pct, 1), 99)
	m.mu.Lock()
	defer m.mu.Unlock()
	if cfg := m.ratios[pct]; cfg != nil {
		return cfg, nil
	}
	if m.ratios == nil {
		m.ratios = map[int]*certmagic.Config{}
	}
	c := m.base
	c.RenewalWindowRatio = float64(pct) / 100
	cfg := certmagic.New(m.cache, c)
	m.ratios[pct] = cfg
	return cfg, nil
}
