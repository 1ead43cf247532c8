package acmetest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// PebbleOptions configure a Pebble.
type PebbleOptions struct {
	// HTTPPort and TLSPort are where the validation authority connects for
	// HTTP-01 and TLS-ALPN-01, on 127.0.0.1: the ports of the listeners under
	// test. Zero: that challenge cannot succeed.
	HTTPPort, TLSPort int
	// NonceRejectPercent is the share of valid nonces the front end refuses with
	// badNonce, to exercise the client's retries. Zero: none.
	NonceRejectPercent int
	// Validity is the lifetime of the certificates issued. Zero: 30 days.
	// Pebble's renewal information (ARI) suggests renewing within a day of two
	// thirds of the lifetime, clamped to the lifetime: with less than about
	// three days, certmagic may renew at any moment.
	Validity time.Duration
}

// Pebble is a running in-process Pebble CA.
type Pebble struct {
	// Directory is the ACME directory URL (https on 127.0.0.1).
	Directory string
	// CARootFile is a PEM file with the certificate of the directory's HTTPS
	// server: what tls.acme.caRootFile names to trust it.
	CARootFile string
	// Roots trusts the certificates Pebble issues: a TLS client of a listener
	// under test uses it as RootCAs.
	Roots *x509.CertPool

	orders, finalized, badNonces atomic.Int32
}

// StartPebble starts Pebble and stops it when the test ends. It sets Pebble's
// environment knobs for the test (no random validation delay, no reuse of valid
// authorizations, o.NonceRejectPercent), so tests that use it cannot be parallel.
func StartPebble(t testing.TB, o PebbleOptions) *Pebble {
	t.Helper()
	if o.Validity == 0 {
		o.Validity = 30 * 24 * time.Hour
	}
	// Read by va.New and wfe.New. PEBBLE_VA_ALWAYS_VALID stays unset: every
	// challenge is validated against the listeners.
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "")
	t.Setenv("PEBBLE_AUTHZREUSE", "0") // every order is validated again
	t.Setenv("PEBBLE_WFE_NONCEREJECT", strconv.Itoa(o.NonceRejectPercent))

	logger := log.New(LogSink(t), "pebble: ", 0)
	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: uint64(o.Validity / time.Second)}}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, o.HTTPPort, o.TLSPort, false, startDNS(t), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.test"}, false, false, 0, 0)

	p := &Pebble{Roots: x509.NewCertPool()}
	p.Roots.AddCert(authority.GetRootCert(0).Cert)
	srv := httptest.NewUnstartedServer(p.count(front.Handler()))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut short by tests
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.Directory = srv.URL + wfe.DirectoryPath
	p.CARootFile = filepath.Join(t.TempDir(), "pebble-https.pem")
	der := srv.Certificate().Raw
	if err := os.WriteFile(p.CARootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Orders is the number of orders Pebble accepted (new-order answered 201).
func (p *Pebble) Orders() int { return int(p.orders.Load()) }

// Issued is the number of certificates Pebble issued (finalize answered 200).
func (p *Pebble) Issued() int { return int(p.finalized.Load()) }

// BadNonces is the number of requests Pebble refused with badNonce.
func (p *Pebble) BadNonces() int { return int(p.badNonces.Load()) }

// count wraps Pebble's front end to count what the tests assert on, from the
// responses it sends, as a client would see them.
func (p *Pebble) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if r.Method != http.MethodPost {
			return
		}
		switch {
		case r.URL.Path == "/order-plz" && rec.status == http.StatusCreated:
			p.orders.Add(1)
		case strings.HasPrefix(r.URL.Path, "/finalize-order/") && rec.status == http.StatusOK:
			p.finalized.Add(1)
		case rec.status == http.StatusBadRequest && bytes.Contains(rec.head.Bytes(), []byte("urn:ietf:params:acme:error:badNonce")):
			p.badNonces.Add(1)
		}
	})
}

// recorder keeps the status and the first bytes of a response body.
type recorder struct {
	http.ResponseWriter
	status int
	head   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if n := 1024 - r.head.Len(); n > 0 {
		r.head.Write(b[:min(n, len(b))])
	}
	return r.ResponseWriter.Write(b)
}

// startDNS runs a DNS server on 127.0.0.1 (TCP, which Pebble's resolver uses)
// that answers every A question with 127.0.0.1 and every AAAA question with no
// record, and returns its address.
func startDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{Listener: ln, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			res := new(dns.Msg)
			res.SetReply(req)
			for _, q := range req.Question {
				if q.Qtype == dns.TypeA {
					res.Answer = append(res.Answer, &dns.A{
						Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
						A:   net.IPv4(127, 0, 0, 1),
					})
				}
			}
			w.WriteMsg(res)
		})}
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatalf("DNS server: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("DNS server did not start")
	}
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}
