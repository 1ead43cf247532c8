package credexchange

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Bounds of a token fetch.
const (
	// DefaultFetchTimeout bounds one token request, connection to last byte.
	DefaultFetchTimeout = 10 * time.Second
	// MaxTokenResponseSize bounds a token endpoint's response body; an access
	// token response is a small JSON object.
	MaxTokenResponseSize = 64 << 10
)

// CheckTokenURL accepts an absolute https URL, or an http one whose host is a
// loopback address or "localhost" (a token endpoint in a test, or a local agent):
// client secrets and tokens must not cross a network in clear text. User info and
// fragments are refused.
func CheckTokenURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	if u.User != nil {
		return errors.New("must not carry user info; name the client with clientIDFile and clientSecretFile")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("%q must not have a fragment", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q: only https, or http to a loopback address", raw)
	}
	return fmt.Errorf("%q: the scheme must be https", raw)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// NewHTTPClient returns the client token requests go out with: no proxy from the
// environment, TLS 1.2 or later verified against roots (nil: the system's), no
// redirects followed (a redirected POST would carry the client secret to wherever
// the endpoint points), timeout as the bound of a whole request, and response
// bodies cut at MaxTokenResponseSize.
func NewHTTPClient(roots *x509.CertPool, timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: min(timeout, 5*time.Second)}).DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		TLSHandshakeTimeout:    min(timeout, 5*time.Second),
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport:     cappedTransport{next: tr, limit: MaxTokenResponseSize},
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// LoadRoots reads a PEM bundle of CA certificates for a token endpoint.
func LoadRoots(path string) (*x509.CertPool, error) {
	pem, err := readBounded(path, 1<<20)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

var errResponseTooLarge = fmt.Errorf("token endpoint response larger than %d bytes", MaxTokenResponseSize)

// cappedTransport makes a response body fail once it passes limit bytes.
type cappedTransport struct {
	next  http.RoundTripper
	limit int64
}

func (t cappedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: t.limit}
	return resp, nil
}

type cappedBody struct {
	io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errResponseTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, errResponseTooLarge
	}
	return n, err
}
