// Package cpstorage is a certmagic.Storage kept by the control plane: an ingress
// proxy's ACME account, keys, certificates and issuance locks travel over the
// control plane's CertStorage API (gRPC, with the proxy's bootstrap token) into
// the control plane's store. Every replica of an ingress that uses it shares
// one set of certificates and places one order per name, with no shared disk;
// it is what a listener's tls.acme.storage {controlPlane: true} selects.
//
// What the control plane keeps is chosen by the proxy's credential: every
// ingress of one namespace shares a key space, and nothing of another
// namespace is visible. A lock is a stream held open while the lock is held
// (controlplane/certstore explains why); if the stream ends before Unlock (the
// control plane replica went away, the connection broke), the lock is lost, a
// warning says so, and another replica may take it.
//
// It is not for: deciding where certificates come from (gateway/certs), or the
// config stream to the same control plane (gateway/cpclient). It is not a
// cache: every call is a round trip; certmagic keeps certificates in memory.
package cpstorage

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
)

// DefaultCallTimeout bounds a call other than Lock whose context has no
// earlier deadline.
const DefaultCallTimeout = 15 * time.Second

// Options configure a Storage. Every field documents its zero value.
type Options struct {
	// Addresses are the control plane replicas, host:port each. Calls go to the
	// first one that accepts a connection, in this order; when it fails, the
	// next connection attempt starts again from the first. Required.
	Addresses []string
	// TLS secures the connection and checks the control plane's certificate
	// (its ServerName is set per address from the address's host unless set
	// here). Nil: plain text, for tests only; the token then travels in clear.
	TLS *tls.Config
	// Token is the proxy's bootstrap token, sent as "authorization: Bearer" on
	// every call. It is never logged. Required: the control plane admits
	// ingress proxies by it.
	Token string
	// Logger receives locks lost. Nil discards.
	Logger *slog.Logger
	// CallTimeout bounds one call other than Lock when its context has no
	// earlier deadline. Zero: DefaultCallTimeout.
	CallTimeout time.Duration
}

// keepaliveParams ping the control plane on quiet connections (a held lock's
// stream is quiet for as long as an order takes) so that a dead one is noticed
// within about 40 s; controlplane/push.ServerOptions permits this rate.
var keepaliveParams = keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}

// connectParams bound one connection attempt to 5 s, so that a replica whose
// host is gone (it answers nothing, not even a reset) costs 5 s before the next
// address is tried rather than gRPC's default 20 s; reconnection backs off to
// at most 30 s, so storage works again soon after the control plane returns.
var connectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 30 * time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// releaseTimeout bounds the wait for the control plane to confirm a release.
// Past it the stream is cut, which releases the lock as well.
const releaseTimeout = 10 * time.Second

// Storage is a certmagic.Storage over the control plane's CertStorage API. It
// is safe for concurrent use; one Storage serves every listener of a proxy.
type Storage struct {
	conn        *grpc.ClientConn
	client      cpv1.CertStorageClient
	log         *slog.Logger
	callTimeout time.Duration
	name        string

	mu    sync.Mutex
	locks map[string]*nameLock
}

var _ certmagic.Storage = (*Storage)(nil)

// New checks opts and prepares the connection; it dials nobody until the first
// call.
func New(opts Options) (*Storage, error) {
	if len(opts.Addresses) == 0 {
		return nil, errors.New("cpstorage: Options.Addresses: at least one control-plane address is required")
	}
	if opts.Token == "" {
		return nil, errors.New("cpstorage: Options.Token is required: the control plane admits ingress proxies by their bootstrap token")
	}
	addrs := make([]resolver.Address, 0, len(opts.Addresses))
	for i, a := range opts.Addresses {
		host, _, err := net.SplitHostPort(a)
		if err != nil || strings.Contains(a, "://") || host == "" {
			return nil, fmt.Errorf("cpstorage: Options.Addresses[%d]: %q is not host:port", i, a)
		}
		// ServerName: each replica's certificate is checked for its own host
		// name, as a connection to that address alone would be.
		addrs = append(addrs, resolver.Address{Addr: a, ServerName: host})
	}
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS.Clone())
	}
	r := manual.NewBuilderWithScheme("portcullis-controlplane")
	r.InitialState(resolver.State{Addresses: addrs})
	conn, err := grpc.NewClient(r.Scheme()+":///"+opts.Addresses[0],
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(bearer{token: opts.Token, requireTLS: opts.TLS != nil}),
		grpc.WithKeepaliveParams(keepaliveParams),
		grpc.WithConnectParams(connectParams))
	if err != nil {
		return nil, fmt.Errorf("cpstorage: %w", err)
	}
	s := &Storage{
		conn:        conn,
		client:      cpv1.NewCertStorageClient(conn),
		log:         opts.Logger,
		callTimeout: opts.CallTimeout,
		name:        "controlplane:" + strings.Join(opts.Addresses, ","),
		locks:       map[string]*nameLock{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.callTimeout <= 0 {
		s.callTimeout = DefaultCallTimeout
	}
	return s, nil
}

// Close releases every lock this Storage holds, then closes the connection.
// Calls after Close fail.
func (s *Storage) Close() error {
	s.mu.Lock()
	var held []*heldLock
	for _, nl := range s.locks {
		if nl.held != nil {
			held = append(held, nl.held)
			nl.held = nil
		}
	}
	s.mu.Unlock()
	for _, h := range held {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		h.release(ctx, s.log)
		cancel()
	}
	return s.conn.Close()
}

// String names the storage in certmagic's logs (addresses only, never the token).
func (s *Storage) String() string { return s.name }

// Store writes value at key.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	_, err := s.client.Store(ctx, &cpv1.CertStoreRequest{Key: key, Value: value})
	return callError("store", key, err)
}

// Load returns the value at key; a missing key is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	resp, err := s.client.Load(ctx, &cpv1.CertLoadRequest{Key: key})
	if err != nil {
		return nil, callError("load", key, err)
	}
	return resp.GetValue(), nil
}

// Delete removes key and everything below it; a missing key is not an error.
func (s *Storage) Delete(ctx context.Context, key string) error {
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	_, err := s.client.Delete(ctx, &cpv1.CertDeleteRequest{Key: key})
	return callError("delete", key, err)
}

// Exists reports whether key is a file or a directory; errors count as absent.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// Stat describes key; a missing key is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	resp, err := s.client.Stat(ctx, &cpv1.CertStatRequest{Key: key})
	if err != nil {
		return certmagic.KeyInfo{}, callError("stat", key, err)
	}
	info := certmagic.KeyInfo{Key: resp.GetKey(), Size: resp.GetSize(), IsTerminal: resp.GetIsTerminal()}
	if n := resp.GetModifiedUnixNano(); n != 0 {
		info.Modified = time.Unix(0, n)
	}
	return info, nil
}

// List returns the keys below dir, as certmagic's FileStorage does.
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	resp, err := s.client.List(ctx, &cpv1.CertListRequest{Directory: dir, Recursive: recursive})
	if err != nil {
		return nil, callError("list", dir, err)
	}
	return resp.GetKeys(), nil
}

// callContext bounds a call by CallTimeout unless ctx ends sooner.
func (s *Storage) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= s.callTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.callTimeout)
}

// callError turns a call's status into certmagic's terms: NotFound is
// fs.ErrNotExist; anything else keeps its code and message.
func callError(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("cpstorage: %s %q: %w", op, key, fs.ErrNotExist)
	}
	return fmt.Errorf("cpstorage: %s %q: %w", op, key, err)
}

// bearer sends the proxy's token with every call.
type bearer struct {
	token      string
	requireTLS bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }
