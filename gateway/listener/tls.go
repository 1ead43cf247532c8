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
	"sync/atomic"

	"github.com/portcullis/portcullis/gateway/config"
)

// tlsState holds a listener's TLS configuration behind an atomic pointer, so that
// a config reload swaps certificates for new handshakes without rebinding.
type tlsState struct {
	base *tls.Config // given to tls.Server; it only points at cur
	cur  atomic.Pointer[tls.Config]
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

func newTLSState(spec config.ListenerTLS) (*tlsState, error) {
	cfg, err := buildTLSConfig(spec)
	if err != nil {
		return nil, err
	}
	ts := &tlsState{}
	ts.cur.Store(cfg)
	// GetConfigForClient hands each handshake the current config. Session ticket
	// keys stay those of base, so resumption survives a reload.
	ts.base = &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return ts.cur.Load(), nil },
	}
	return ts, nil
}

// buildTLSConfig loads the files of spec. The certificate for a handshake is
// chosen by crypto/tls among Certificates: the first one that supports the
// client's SNI name and algorithms, else the first one.
func buildTLSConfig(spec config.ListenerTLS) (*tls.Config, error) {
	if len(spec.Certificates) == 0 {
		return nil, errors.New("tls.certificates: at least one certificate is required")
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
		Certificates: certs,
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
	return cfg, nil
}

// ReloadTLS reads the files of spec again and uses them for every handshake that
// starts from now on; connections already established keep their session. On
// error the running configuration is kept.
func (s *Server) ReloadTLS(spec config.ListenerTLS) error {
	if s.tls == nil {
		return errors.New("tls: listener is not HTTPS")
	}
	cfg, err := buildTLSConfig(spec)
	if err != nil {
		return err
	}
	s.tls.cur.Store(cfg)
	return nil
}

// SetCertificates replaces the certificates used for new handshakes and keeps
// the other TLS settings.
func (s *Server) SetCertificates(certs []tls.Certificate) error {
	if s.tls == nil {
		return errors.New("tls: listener is not HTTPS")
	}
	if len(certs) == 0 {
		return errors.New("tls.certificates: at least one certificate is required")
	}
	cfg := s.tls.cur.Load().Clone()
	cfg.Certificates = certs
	s.tls.cur.Store(cfg)
	return nil
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
