package oidc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/portcullis/portcullis/gateway/filter"
)

// Timing of the calls to the provider.
const (
	idpTimeout = 10 * time.Second
	// retryMin is the first pause after a failed discovery, and the least time
	// between two attempts however many requests ask for one; retryMax the
	// longest pause when nobody asks.
	retryMin = time.Second
	retryMax = 30 * time.Second
	// firstWait is how long a request waits for the first discovery attempt to
	// end (a request just after start-up), rather than failing at once.
	firstWait      = 2 * time.Second
	maxIdPBody     = 1 << 20
	maxIdPRedirect = 3
)

// provider is what discovery learned; immutable once published.
type provider struct {
	endpoint   oauth2.Endpoint
	verifier   *gooidc.IDTokenVerifier
	endSession string // "" when the provider has no RP-initiated logout
}

// discovery fetches the provider's metadata in the background until it has it.
// It starts with the first request that needs the provider (so that building a
// snapshot never touches the network), then retries after 1 s, 2 s, 4 s ... up to
// 30 s, sooner (but at most once a second) when a request needs the provider. Once
// discovered, the metadata is kept for the life of the filter; go-oidc refetches
// the key set when an ID token names an unknown key.
type discovery struct {
	issuer string
	// verify configures the ID-token verifier (client ID, clock).
	verify *gooidc.Config
	client *http.Client
	log    *slog.Logger

	current atomic.Pointer[provider]
	once    sync.Once     // starts the loop, or (in close) marks it never started
	first   chan struct{} // closed when the first attempt has ended
	kick    chan struct{} // a request wants an attempt now
	ctx     context.Context
	stop    context.CancelFunc
	done    chan struct{} // closed when the loop has ended
}

func newDiscovery(issuer string, verify *gooidc.Config, client *http.Client, log *slog.Logger) *discovery {
	ctx, cancel := context.WithCancel(context.Background())
	return &discovery{
		issuer: issuer, verify: verify, client: client, log: log,
		first: make(chan struct{}), kick: make(chan struct{}, 1), ctx: ctx, stop: cancel, done: make(chan struct{}),
	}
}

func (d *discovery) run(ctx context.Context) {
	defer close(d.done)
	pause := retryMin
	for attempt := 1; ; attempt++ {
		started := time.Now()
		p, err := d.discover(ctx)
		if err == nil {
			d.current.Store(p) // before first is closed: a waiting request must find it
		}
		if attempt == 1 {
			close(d.first)
		}
		if err == nil {
			d.log.Info("oidc: provider discovered", "issuer", d.issuer, "attempts", attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("oidc: provider discovery failed; logins get 503 until it succeeds",
			"issuer", d.issuer, "attempt", attempt, "retry_in", pause, "error", err)
		// ±10% jitter, so that replicas started together do not call in step.
		timer := time.NewTimer(pause + time.Duration((rand.Float64()*0.2-0.1)*float64(pause)))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-d.kick:
			timer.Stop()
			if wait := retryMin - time.Since(started); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		pause = min(2*pause, retryMax)
	}
}

// discover fetches the discovery document and checks the endpoints a login uses:
// the same rule as for the issuer, since a token endpoint over plain http would
// receive the client secret in clear, and a key set over plain http could be
// swapped for an attacker's.
func (d *discovery) discover(ctx context.Context) (*provider, error) {
	ctx, cancel := context.WithTimeout(ctx, idpTimeout)
	defer cancel()
	// The provider keeps the client (not the context) for its key-set fetches.
	p, err := gooidc.NewProvider(gooidc.ClientContext(ctx, d.client), d.issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		JWKS        string   `json:"jwks_uri"`
		EndSession  string   `json:"end_session_endpoint"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, err
	}
	ep := p.Endpoint()
	ep.AuthStyle = authStyle(meta.AuthMethods)
	for _, e := range [...][2]string{
		{"authorization_endpoint", ep.AuthURL}, {"token_endpoint", ep.TokenURL},
		{"jwks_uri", meta.JWKS}, {"end_session_endpoint", meta.EndSession},
	} {
		if e[1] == "" {
			if e[0] == "end_session_endpoint" {
				continue
			}
			return nil, fmt.Errorf("the discovery document has no %s", e[0])
		}
		u, err := url.Parse(e[1])
		if err == nil {
			err = filter.CheckHTTPSURL(u)
		}
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", e[0], e[1], err)
		}
	}
	return &provider{
		endpoint:   ep,
		verifier:   p.Verifier(d.verify),
		endSession: meta.EndSession,
	}, nil
}

// authStyle chooses how the client authenticates at the token endpoint from what
// the provider announces. client_secret_post when offered: it is as safe over TLS,
// and the encoding of Basic credentials (RFC 6749 §2.3.1 form-encodes them first)
// is where providers disagree. Else client_secret_basic, the default when nothing is
// announced (OpenID Connect Discovery §3). Letting x/oauth2 guess instead would
// spend a failed request on every provider that takes only the other one.
func authStyle(methods []string) oauth2.AuthStyle {
	switch {
	case slices.Contains(methods, "client_secret_post"):
		return oauth2.AuthStyleInParams
	case len(methods) == 0 || slices.Contains(methods, "client_secret_basic"):
		return oauth2.AuthStyleInHeader
	}
	return oauth2.AuthStyleAutoDetect
}

// get returns the provider, or nil while it is not discovered. Just after start-up
// it waits for the first attempt (at most firstWait and the request's context);
// later it asks for an early retry and returns at once.
func (d *discovery) get(ctx context.Context) *provider {
	if p := d.current.Load(); p != nil {
		return p
	}
	d.once.Do(func() { go d.run(d.ctx) })
	select {
	case <-d.first:
	default:
		t := time.NewTimer(firstWait)
		select {
		case <-d.first:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	if p := d.current.Load(); p != nil {
		return p
	}
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return nil
}

// close stops the loop and waits for it (a fetch in flight is cancelled).
func (d *discovery) close() {
	d.stop()
	d.once.Do(func() { close(d.first); close(d.done) }) // never started
	<-d.done
}

// newClient is the client for every call to the provider: discovery, key sets,
// token exchange and refresh. Its own timeouts, TLS 1.2 or later, bodies capped,
// at most three redirects and only to the same host (a token request is never
// redirected: net/http does not resend a POST body to a 302's target as POST).
func newClient() *http.Client {
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    5 * time.Second,
		ResponseHeaderTimeout:  idpTimeout,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConnsPerHost:    4,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: limitedBodies{tr},
		Timeout:   idpTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxIdPRedirect {
				return fmt.Errorf("more than %d redirects", maxIdPRedirect)
			}
			if req.URL.Host != via[0].URL.Host {
				return fmt.Errorf("redirect to another host (%s) refused", req.URL.Host)
			}
			return filter.CheckHTTPSURL(req.URL)
		},
	}
}

// limitedBodies fails a read past maxIdPBody: go-oidc reads discovery and key-set
// bodies whole.
type limitedBodies struct{ rt http.RoundTripper }

func (l limitedBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxIdPBody}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

var errBodyTooLarge = errors.New("the provider's response is larger than 1 MiB")

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left+1] // one byte more, to tell "exactly the limit" from "more"
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, errBodyTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
