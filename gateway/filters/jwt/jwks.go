package jwt

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
)

const (
	// fetchTimeout bounds one JWKS fetch from dial to the last body byte, so that a
	// slow identity provider can hold neither the refresher nor a waiting request.
	fetchTimeout = 10 * time.Second
	// refetchMinInterval is how often a token with an unknown kid may make us fetch
	// the key set outside the schedule. Without it, tokens with random kids would
	// turn us into an amplifier against the identity provider.
	refetchMinInterval = 30 * time.Second
	// maxKidWait bounds how long a request with an unknown kid waits for a
	// refetch, so that a slow identity provider cannot pin request goroutines.
	maxKidWait = 5 * time.Second
	// firstRetry is the wait after a failed fetch; it doubles up to the refresh
	// interval, so that an endpoint that was down at start is tried again soon.
	firstRetry = time.Second
	// maxRedirects bounds same-host redirects of a JWKS URI.
	maxRedirects = 3
	// cacheSubdir is where last-known-good key sets live under the data directory.
	cacheSubdir = "jwt-jwks"
)

// source keeps one issuer's key set current: from a remote JWKS refreshed in the
// background, or from a local file re-read on the same schedule. Requests only
// read keys (one atomic load); a refresh replaces the whole set.
type source struct {
	issuer    string
	uri       *url.URL // remote key set, or
	file      string   // local key set
	interval  time.Duration
	cachePath string // last-known-good copy of a remote set; "" keeps none
	client    *http.Client
	log       *slog.Logger

	keys atomic.Pointer[keySet]

	mu       sync.Mutex
	inflight chan struct{} // closed when the fetch in progress ends; nil when idle
	lastKick time.Time     // last fetch asked for by an unknown kid
	kick     chan struct{} // wakes the refresher for an out-of-schedule fetch

	ctx       context.Context // cancelled by Close; bounds fetches
	cancel    context.CancelFunc
	started   bool          // start ran: Close must wait for the refresher
	done      chan struct{} // closed when the refresher has returned
	closeOnce sync.Once
}

func newSource(issuer string, uri *url.URL, file string, interval time.Duration, dataDir string, log *slog.Logger) (*source, error) {
	s := &source{
		issuer:   issuer,
		uri:      uri,
		file:     file,
		interval: interval,
		log:      log.With("issuer", issuer),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if file != "" {
		// A local file is read now, synchronously: it is part of the config, and a
		// missing or broken one should refuse the config rather than every request.
		if err := s.loadFile(); err != nil {
			s.cancel()
			return nil, err
		}
		s.log = s.log.With("jwksFile", file)
		return s, nil
	}
	s.client = newClient(uri)
	s.log = s.log.With("jwksURI", uri.Redacted())
	if dataDir != "" {
		sum := sha256.Sum256([]byte(issuer + "\n" + uri.String()))
		s.cachePath = filepath.Join(dataDir, cacheSubdir, hex.EncodeToString(sum[:16])+".json")
		s.loadPersisted()
	}
	return s, nil
}

// start runs the refresher. It never blocks: the build of a snapshot must not wait
// on the network, and requests that arrive before the first fetch wait for it in
// awaitFetch instead (bounded by maxKidWait and their own context).
func (s *source) start() {
	if s.uri != nil {
		// Claim the first fetch now, so that a request arriving before the
		// goroutine runs waits for it rather than finding no keys.
		s.inflight = make(chan struct{})
	}
	s.started = true
	go s.run()
}

func (s *source) run() {
	defer close(s.done)
	next := time.Duration(0)
	if s.uri == nil {
		next = s.interval // the file was just read
	}
	retry := firstRetry
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			s.endFetch() // release a request waiting on a claimed fetch
			return
		case <-t.C:
		case <-s.kick:
		}
		if err := s.refresh(); err != nil {
			next, retry = retry, min(retry*2, s.interval)
		} else {
			next, retry = jitter(s.interval), firstRetry
		}
		t.Reset(next)
	}
}

// jitter spreads refreshes of many replicas by ±10%, so that they do not all hit
// the identity provider in the same second after a common restart.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

// refresh fetches once; requests waiting on the fetch are released when it ends.
func (s *source) refresh() error {
	s.mu.Lock()
	if s.inflight == nil {
		s.inflight = make(chan struct{})
	}
	s.mu.Unlock()
	// A kick sent for this very fetch must not cause a second one.
	select {
	case <-s.kick:
	default:
	}
	var err error
	if s.uri != nil {
		err = s.fetch()
	} else {
		err = s.loadFile()
	}
	if err != nil && s.ctx.Err() == nil { // not merely closed mid-fetch
		s.log.Warn("jwt: key set refresh failed", "err", err, "servingCachedKeys", s.keys.Load() != nil)
	}
	s.endFetch()
	return err
}

func (s *source) endFetch() {
	s.mu.Lock()
	ch := s.inflight
	s.inflight = nil
	s.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// awaitFetch is called by a request whose kid is unknown. It waits for the fetch in
// progress if there is one (the first fetch after start, say); otherwise it asks
// for a fetch, at most once per refetchMinInterval, and waits for that. It returns
// without waiting when the rate limit says no: the caller then refuses the token.
func (s *source) awaitFetch(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, maxKidWait)
	defer cancel()
	s.fetchAndWait(ctx, true)
}

// fetchAndWait is awaitFetch; limited false skips the rate limit (for tests).
func (s *source) fetchAndWait(ctx context.Context, limited bool) {
	s.mu.Lock()
	ch := s.inflight
	if ch == nil {
		if limited && time.Since(s.lastKick) < refetchMinInterval {
			s.mu.Unlock()
			return
		}
		s.lastKick = time.Now()
		ch = make(chan struct{})
		s.inflight = ch
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
}

// fetch gets the remote key set and, when it parses, makes it current and
// persists it. A failed fetch changes nothing: stale keys keep serving, because
// refusing every token while the identity provider is down would turn its outage
// into ours, and a key set is public data whose staleness only delays rotation.
func (s *source) fetch() error {
	ctx, cancel := context.WithTimeout(s.ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.uri.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	req.Header.Set("User-Agent", "portcullis-jwt")
	res, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(res.Body, 4096)) // keep the connection reusable
		return fmt.Errorf("JWKS endpoint answered %s", res.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("reading the key set: %w", err)
	}
	if len(raw) > maxJWKSBytes {
		return fmt.Errorf("key set is larger than %d bytes", maxJWKSBytes)
	}
	set, err := s.install(raw)
	if err != nil {
		return err
	}
	if s.cachePath != "" {
		if err := persist(s.cachePath, set.raw); err != nil {
			s.log.Warn("jwt: could not persist the key set", "path", s.cachePath, "err", err)
		}
	}
	return nil
}

// install parses raw and makes it the current set, unless it is unchanged.
func (s *source) install(raw []byte) (*keySet, error) {
	if old := s.keys.Load(); old != nil && string(old.raw) == string(raw) {
		return old, nil
	}
	set, skipped, err := parseKeySet(raw)
	if err != nil {
		return nil, err
	}
	if len(skipped) > 0 {
		s.log.Warn("jwt: keys skipped in the key set", "skipped", strings.Join(skipped, "; "))
	}
	s.keys.Store(set)
	kids := make([]string, 0, len(set.all))
	for _, k := range set.all {
		kids = append(kids, k.kid)
	}
	s.log.Info("jwt: key set installed", "kids", kids)
	return set, nil
}

func (s *source) loadFile() error {
	raw, err := readLimited(s.file)
	if err != nil {
		return err
	}
	_, err = s.install(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", s.file, err)
	}
	return nil
}

// loadPersisted installs the last-known-good copy of a remote set, so that a
// restart while the identity provider is unreachable still verifies tokens.
func (s *source) loadPersisted() {
	raw, err := readLimited(s.cachePath)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err == nil {
		_, err = s.install(raw)
	}
	if err != nil {
		s.log.Warn("jwt: ignoring the persisted key set", "path", s.cachePath, "err", err)
		return
	}
	var age time.Duration
	if fi, err := os.Stat(s.cachePath); err == nil {
		age = time.Since(fi.ModTime()).Round(time.Second)
	}
	s.log.Info("jwt: loaded the last-known-good key set until the endpoint answers", "path", s.cachePath, "age", age)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxJWKSBytes {
		return nil, fmt.Errorf("%s: key set is larger than %d bytes", path, maxJWKSBytes)
	}
	return raw, nil
}

// persist writes raw to path atomically (temporary file, fsync, rename), so that a
// crash mid-write leaves the previous good copy, never half a key set.
func persist(path string, raw []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(raw) {
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".jwks-*") // mode 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Close stops the refresher and waits for it. Safe to call more than once.
func (s *source) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		if s.started {
			<-s.done
		}
		if s.client != nil {
			s.client.CloseIdleConnections()
		}
	})
}

// newClient returns the client for one JWKS URI: bounded in time at every step,
// TLS 1.2 at least, and following redirects only to the same host with an allowed
// scheme, so that a compromised or misconfigured endpoint cannot send us to an
// address of its choosing.
func newClient(origin *url.URL) *http.Client {
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    5 * time.Second,
		ResponseHeaderTimeout:  5 * time.Second,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConns:           2,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   fetchTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			if req.URL.Host != origin.Host {
				return fmt.Errorf("redirect to another host (%s) refused", req.URL.Host)
			}
			return filter.CheckHTTPSURL(req.URL)
		},
	}
}
