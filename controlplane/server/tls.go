package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloadCheck is how often, at most, the certificate files are looked at for
// a change.
const certReloadCheck = 10 * time.Second

// certReloader serves the certificate in certFile/keyFile and loads it again when
// either file's modification time changes (a renewal), keeping the old one if the
// new files do not load.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	lastCheck time.Time
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load() error {
	cm, km, err := r.modTimes()
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls.certFile/keyFile: %w", err)
	}
	r.cert, r.certMod, r.keyMod, r.lastCheck = &pair, cm, km, time.Now()
	return nil
}

func (r *certReloader) modTimes() (time.Time, time.Time, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("tls.certFile: %w", err)
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("tls.keyFile: %w", err)
	}
	return c.ModTime(), k.ModTime(), nil
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.lastCheck) >= certReloadCheck {
		r.lastCheck = time.Now()
		if cm, km, err := r.modTimes(); err == nil && (!cm.Equal(r.certMod) || !km.Equal(r.keyMod)) {
			if err := r.load(); err != nil {
				r.log.Error("tls: the changed certificate does not load; serving the previous one", "err", err)
			} else {
				r.log.Info("tls: certificate reloaded", "file", r.certFile)
			}
		}
	}
	return r.cert, nil
}

// serverTLS is the listeners' TLS config: TLS 1.2 or later, client certificates
// verified against clientCAFile when one is configured (and optional: a caller
// may use a bearer token instead).
func serverTLS(c TLSConfig, log *slog.Logger) (*tls.Config, error) {
	certs, err := newCertReloader(c.CertFile, c.KeyFile, log)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if c.ClientCAFile != "" {
		pool, err := loadPool(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.clientCAFile: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
