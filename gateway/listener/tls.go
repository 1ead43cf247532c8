package listener

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/portcullis/portcullis/gateway/config"
)

// tlsState holds a listener's TLS settings behind an atomic pointer, so that a
// config reload swaps certificates for new handshakes without rebinding.
type tlsState struct {
	base *tls.Config // given to tls.Server; it only points at cur
	cur  atomic.Pointer[tlsSettings]
	mu   sync.Mutex // serialises the read-modify-write of cur (SetCertificates, SetCertificateSource)
}

// tlsSettings are the TLS settings of one generation: what ReloadTLS,
// SetCertificates and SetCertificateSource replace as a whole.
type tlsSettings struct {
	config    *tls.Config       // for every other handshake
	challenge *tls.Config       // for TLS-ALPN-01 validation handshakes; nil unless acme offers TLS-ALPN-01
	static    []tls.Certificate // from certificates[], in config order
	source    CertificateSource // managed certificates; nil without acme (or until one is attached)
	acme      bool              // certificates are chosen by certSelector, not by crypto/tls
	hsts      string            // Strict-Transport-Security value, or ""
}

// cipherSuites are the TLS 1.2 suites offered: ECDHE key exchange (forward
// secrecy) with AEAD ciphers only, as RFC 9325 §4.2 recommends; the first RSA one
// is the suite HTTP/2 requires (RFC 9113 §9.2.2). TLS 1.3 suites are not
// configurable and are all AEAD.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// alpnACME is the ALPN protocol of TLS-ALPN-01 validation handshakes (RFC 8737 §6.2).
const alpnACME = "acme-tls/1"

func newTLSState(spec config.ListenerTLS, source CertificateSource) (*tlsState, error) {
	st, err := buildTLS(spec, source)
	if err != nil {
		return nil, err
	}
	ts := &tlsState{}
	ts.cur.Store(st)
	// GetConfigForClient hands each handshake the current config. Session ticket
	// keys stay those of base, so resumption survives a reload.
	ts.base = &tls.Config{
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cur := ts.cur.Load()
			if cur.challenge != nil && isACMEChallenge(hello) {
				return cur.challenge, nil
			}
			return cur.config, nil
		},
	}
	return ts, nil
}

// buildTLS loads the files of spec. Without acme the certificate for a handshake
// is chosen by crypto/tls among the static certificates: the first one that
// supports the client's SNI name and algorithms, else the first. With acme it is
// chosen by certSelector (see there for the order).
func buildTLS(spec config.ListenerTLS, source CertificateSource) (*tlsSettings, error) {
	if len(spec.Certificates) == 0 && spec.ACME == nil {
		return nil, errors.New("tls.certificates: at least one certificate is required (or acme)")
	}
	certs := make([]tls.Certificate, len(spec.Certificates))
	for i, cf := range spec.Certificates {
		field := fmt.Sprintf("tls.certificates[%d]", i)
		certPEM, err := os.ReadFile(cf.CertFile)
		if err != nil {
			return nil, fmt.Errorf("%s.certFile: %w", field, err)
		}
		keyPEM, err := os.ReadFile(cf.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.keyFile: %w", field, err)
		}
		if certs[i], err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
			return nil, fmt.Errorf("%s: %s and %s: %w", field, cf.CertFile, cf.KeyFile, err)
		}
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites,
		NextProtos:   []string{"h2", "http/1.1"}, // ALPN, RFC 7301; h2 preferred
	}
	switch spec.MinVersion {
	case "", "1.2":
	case "1.3":
		cfg.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tls.minVersion: %q is not 1.2 or 1.3", spec.MinVersion)
	}
	if spec.ClientCAFile != "" {
		pem, err := os.ReadFile(spec.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.clientCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.clientCAFile: no PEM certificate in %s", spec.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert // mTLS (SM-DR2)
	}
	st := &tlsSettings{config: cfg, static: certs, source: source, acme: spec.ACME != nil}
	if spec.HSTS != nil {
		st.hsts = spec.HSTS.Header()
	}
	if st.acme && offersTLSALPN(spec.ACME) {
		// The CA's validation handshake offers only acme-tls/1 and presents no
		// client certificate, so it gets a config of its own: the challenge
		// certificate, that protocol alone, and no client authentication (which
		// would otherwise make TLS-ALPN-01 impossible on an mTLS listener).
		st.challenge = &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: cipherSuites, NextProtos: []string{alpnACME}}
	}
	return st.finish(), nil
}

// offersTLSALPN reports whether a offers the TLS-ALPN-01 challenge (both
// challenges are offered when none is listed).
func offersTLSALPN(a *config.ACME) bool {
	return len(a.Challenges) == 0 || slices.Contains(a.Challenges, config.ChallengeTLSALPN01)
}

// finish points the configs of st at its certificates and returns st.
func (st *tlsSettings) finish() *tlsSettings {
	if !st.acme {
		st.config.Certificates = st.static
		return st
	}
	sel := &certSelector{static: newStaticIndex(st.static), source: st.source}
	st.config.Certificates = nil
	st.config.GetCertificate = sel.certificate
	if st.challenge != nil {
		st.challenge.GetCertificate = sel.challengeCertificate
	}
	return st
}

// with returns a copy of st changed by f, with fresh configs.
func (st *tlsSettings) with(f func(*tlsSettings)) *tlsSettings {
	n := *st
	n.config = st.config.Clone()
	if st.challenge != nil {
		n.challenge = st.challenge.Clone()
	}
	f(&n)
	return n.finish()
}

// ReloadTLS reads the files of spec again and uses them for every handshake that
// starts from now on; connections already established keep their session. The
// certificate source attached to the listener is kept. On error the running
// configuration is kept.
func (s *Server) ReloadTLS(spec config.ListenerTLS) error {
	if s.tls == nil {
		return errors.New("tls: listener is not HTTPS")
	}
	s.tls.mu.Lock()
	defer s.tls.mu.Unlock()
	st, err := buildTLS(spec, s.tls.cur.Load().source)
	if err != nil {
		return err
	}
	s.tls.cur.Store(st)
	return nil
}

// SetCertificates replaces the static certificates used for new handshakes and
// keeps the other TLS settings.
func (s *Server) SetCertificates(certs []tls.Certificate) error {
	if s.tls == nil {
		return errors.New("tls: listener is not HTTPS")
	}
	s.tls.mu.Lock()
	defer s.tls.mu.Unlock()
	cur := s.tls.cur.Load()
	if len(certs) == 0 && !cur.acme {
		return errors.New("tls.certificates: at least one certificate is required")
	}
	s.tls.cur.Store(cur.with(func(st *tlsSettings) { st.static = certs }))
	return nil
}

// SetCertificateSource attaches the source of managed (ACME) certificates used
// for new handshakes, replacing the one given in Options. It is an error on a
// listener whose tls has no acme.
func (s *Server) SetCertificateSource(src CertificateSource) error {
	if s.tls == nil || !s.tls.cur.Load().acme {
		return errors.New("tls.acme: listener does not obtain certificates with ACME")
	}
	s.tls.mu.Lock()
	defer s.tls.mu.Unlock()
	s.tls.cur.Store(s.tls.cur.Load().with(func(st *tlsSettings) { st.source = src }))
	return nil
}

// hsts is the Strict-Transport-Security value of the listener, or "".
func (s *Server) hsts() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.cur.Load().hsts
}

type tlsStateKey struct{}

// connContext records the TLS state of an HTTP/1.x connection over TLS in the
// connection's context. net/http does not see the *tls.Conn under the framing
// guard, so Request.TLS is filled only because the guard has a ConnectionState
// method; the context value makes TLSState independent of that detail.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tg, ok := c.(*tlsGuardConn); ok {
		return context.WithValue(ctx, tlsStateKey{}, tg.state)
	}
	return ctx
}

// TLSState returns the TLS connection state of r's connection, or nil for clear
// text. Use it rather than r.TLS: for HTTP/1.x over TLS the connection net/http
// serves is the framing guard above the *tls.Conn, and TLSState finds the state
// wherever net/http left it (r.TLS, or the connection context set by the Server).
func TLSState(r *http.Request) *tls.ConnectionState {
	if r.TLS != nil {
		return r.TLS
	}
	st, _ := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	return st
}
