package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"

	"github.com/caddyserver/certmagic"

	"github.com/portcullis/portcullis/gateway/certs"
	"github.com/portcullis/portcullis/gateway/certs/cpstorage"
	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/cpclient"
	"github.com/portcullis/portcullis/gateway/listener"
	"github.com/portcullis/portcullis/gateway/snapshot"
)

// The ACME certificate managers of the HTTPS listeners with tls.acme (one per
// listener). A manager is kept across reloads while everything it was built from
// is unchanged (its digest), so a reload neither loses its state nor asks the CA
// again; a listener rebound for another reason gets the same manager.

type acmeEntry struct {
	digest string
	mgr    *certs.Manager
}

// acmePlan is what one Apply does to the managers.
type acmePlan struct {
	digests map[string]string         // listener key -> digest, for every listener with acme
	keep    map[string]*certs.Manager // listener key -> running manager to keep
	next    map[string]*acmeEntry     // after build: every manager of the new config
	fresh   []*certs.Manager          // built by this Apply: started on commit, closed on failure
}

// planACME decides which managers are kept. It has no side effects.
func (g *Gateway) planACME(next *snapshot.Snapshot) *acmePlan {
	p := &acmePlan{digests: map[string]string{}, keep: map[string]*certs.Manager{}, next: map[string]*acmeEntry{}}
	httpKey := plainHTTPListener(next)
	for key, spec := range next.Listeners {
		if spec.TLS == nil || spec.TLS.ACME == nil {
			continue
		}
		d := g.acmeDigest(spec, next.Listeners[httpKey])
		p.digests[key] = d
		if old := g.acme[key]; old != nil && old.digest == d {
			p.keep[key] = old.mgr
			p.next[key] = old
		}
	}
	return p
}

// acmeDigest identifies what a manager is built from: the listener's acme,
// ocspStapling and address, the CA root file's contents, the storage directory,
// and the address of the listener that answers HTTP-01.
func (g *Gateway) acmeDigest(spec config.ListenerSpec, httpSpec config.ListenerSpec) string {
	b, _ := yamlish(struct {
		ACME    *config.ACME
		OCSP    *bool
		Address string
		HTTP    string
		Data    string
	}{spec.TLS.ACME, spec.TLS.OCSPStapling, spec.Address, httpSpec.Address, g.opts.DataDir})
	b = append(b, fileContents([]string{spec.TLS.ACME.CARootFile})...)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// plainHTTPListener is the key of the first clear-text HTTP listener (by key),
// which answers HTTP-01 for every manager; "" when there is none. Every
// clear-text HTTP listener answers, but certmagic is told about one.
func plainHTTPListener(next *snapshot.Snapshot) string {
	var keys []string
	for k, spec := range next.Listeners {
		if isPlainHTTP(spec) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		return ""
	}
	return keys[0]
}

func isPlainHTTP(spec config.ListenerSpec) bool {
	return spec.Protocol == config.ProtocolHTTP || (spec.Protocol == "" && spec.TLS == nil)
}

// listenerOptions adds what a new listener needs from the ACME plan: the kept
// manager of an HTTPS listener, the HTTP-01 answers on a plain-HTTP one.
func (g *Gateway) listenerOptions(key string, spec config.ListenerSpec, p *acmePlan) listener.Options {
	o := listener.Options{Logger: g.log, Events: g.obs}
	if m := p.keep[key]; m != nil {
		o.Certificates = m
	}
	if isPlainHTTP(spec) {
		o.Challenge = g.answerHTTP01
	}
	return o
}

// buildACME builds the managers the plan does not keep, with the bound
// addresses of the listeners that answer their challenges, and attaches every
// manager to its listener. started are the servers this Apply started. On error
// nothing is attached and the managers built are closed.
func (g *Gateway) buildACME(next *snapshot.Snapshot, p *acmePlan, started map[string]*listener.Server) error {
	server := func(key string) *listener.Server {
		if s := started[key]; s != nil {
			return s
		}
		if e := g.servers[key]; e != nil {
			return e.srv
		}
		return nil
	}
	httpAddr := ""
	if s := server(plainHTTPListener(next)); s != nil {
		httpAddr = s.Addr().String()
	}
	built := map[string]*certs.Manager{}
	for key, d := range p.digests {
		if p.keep[key] != nil {
			continue
		}
		spec := next.Listeners[key]
		m, err := g.newManager(key, spec, server(key).Addr().String(), httpAddr)
		if err != nil {
			for _, m := range built {
				m.Close()
			}
			return fmt.Errorf("listener %s: %w", key, err)
		}
		built[key] = m
		p.next[key] = &acmeEntry{digest: d, mgr: m}
		p.fresh = append(p.fresh, m)
	}
	// Attach only once every manager is built: the listeners left running by
	// this Apply then switch to their new manager only when it will be committed.
	for key, m := range built {
		if err := server(key).SetCertificateSource(m); err != nil {
			p.discard()
			return fmt.Errorf("listener %s: %w", key, err)
		}
	}
	return nil
}

func (g *Gateway) newManager(key string, spec config.ListenerSpec, tlsAddr, httpAddr string) (*certs.Manager, error) {
	a := spec.TLS.ACME
	var storage certmagic.Storage
	switch {
	case a.Storage != nil && a.Storage.ControlPlane:
		if g.opts.ControlPlaneCertStorage == nil {
			return nil, errors.New("tls.acme.storage.controlPlane: this proxy has no control plane to keep the state in " +
				"(run it with -controlplane, or give storage.path)")
		}
		if g.opts.Role != RoleIngress {
			return nil, fmt.Errorf("tls.acme.storage.controlPlane: only ingress proxies keep ACME state in the control plane; this one is %s", g.opts.Role)
		}
		storage = g.opts.ControlPlaneCertStorage
	case a.Storage != nil:
		storage = certs.FileStorage(a.Storage.Path)
	case g.opts.DataDir != "":
		storage = certs.FileStorage(filepath.Join(g.opts.DataDir, "certs"))
	default:
		return nil, errors.New("tls.acme.storage: required when the proxy has no -data directory (a path, or controlPlane: true)")
	}
	return certs.New(*a, certs.Options{
		Storage:              storage,
		Logger:               g.log.With("listener", key),
		HTTPChallengeAddr:    httpAddr,
		TLSALPNChallengeAddr: tlsAddr,
		DisableOCSPStapling:  spec.TLS.OCSPStapling != nil && !*spec.TLS.OCSPStapling,
	})
}

// controlPlaneCertStorage is the storage of the listeners with
// tls.acme.storage {controlPlane: true}: the control plane's CertStorage API,
// reached as the config stream reaches it (the same addresses, TLS and
// bootstrap token). It dials nothing until a listener uses it.
func controlPlaneCertStorage(o cpclient.Options, log *slog.Logger) (*cpstorage.Storage, error) {
	st, err := cpstorage.New(cpstorage.Options{Addresses: o.Addresses, TLS: o.TLS, Token: o.Token,
		Logger: log.With("component", "acme-storage")})
	if err != nil {
		return nil, fmt.Errorf("the control plane's certificate storage: %w", err)
	}
	return st, nil
}

// discard closes the managers built for a refused config.
func (p *acmePlan) discard() {
	for _, m := range p.fresh {
		m.Close()
	}
}

// commitACME makes the plan's managers current once the config is applied:
// the new ones start, the ones no listener uses any more stop.
func (g *Gateway) commitACME(p *acmePlan) {
	old := g.acme
	g.acme = p.next
	all := make([]*certs.Manager, 0, len(p.next))
	for _, e := range p.next {
		all = append(all, e.mgr)
	}
	g.acmeManagers.Store(&all)
	for _, m := range p.fresh {
		if err := m.Start(); err != nil {
			g.log.Error("certificate manager did not start", "error", err)
		}
	}
	for key, e := range old {
		if n := p.next[key]; n == nil || n.mgr != e.mgr {
			e.mgr.Close()
		}
	}
}

// closeACME stops every manager (at shutdown).
func (g *Gateway) closeACME() {
	for _, e := range g.acme {
		e.mgr.Close()
	}
	g.acme = nil
	g.acmeManagers.Store(nil)
}

// answerHTTP01 is the Challenge hook of the plain-HTTP listeners: any manager
// of the gateway may have the pending challenge (or find it in its storage).
func (g *Gateway) answerHTTP01(w http.ResponseWriter, r *http.Request) bool {
	ms := g.acmeManagers.Load()
	if ms == nil {
		return false
	}
	for _, m := range *ms {
		if m.HandleHTTPChallenge(w, r) {
			return true
		}
	}
	return false
}

// CertificateStatus reports, for every HTTPS listener with tls.acme ("namespace/name"),
// the state of the names its manager obtains, and its counters.
func (g *Gateway) CertificateStatus() map[string]ListenerCertificates {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]ListenerCertificates, len(g.acme))
	for key, e := range g.acme {
		out[key] = ListenerCertificates{Names: e.mgr.Status(), Stats: e.mgr.Stats(), Manager: managerID(e.mgr)}
	}
	return out
}

// ListenerCertificates is one listener's part of CertificateStatus.
type ListenerCertificates struct {
	Names []certs.CertificateStatus
	Stats certs.Stats
	// Manager identifies the manager instance: it stays the same across reloads
	// that keep the manager.
	Manager string
}

func managerID(m *certs.Manager) string { return fmt.Sprintf("%p", m) }
