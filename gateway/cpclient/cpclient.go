// Package cpclient is the proxy's side of config push (SM-DR5): it streams the
// proxy's scoped config from the control plane, applies each version, answers it
// with an ACK or a NACK carrying the reason, and keeps the last config it accepted
// on disk. It is statically stable: a proxy that restarts while the control plane
// is away starts from its last-known-good config, and a proxy never stops serving
// because the control plane is unreachable; it reconnects forever, with backoff.
// Given several control-plane replicas, it moves to the next one as soon as a
// stream fails, so that losing one replica costs one quick failover.
//
// It is not for: compiling or swapping configs (the Apply function it is given,
// Gateway.Apply), or the control plane's side (controlplane/push).
package cpclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/gateway/config"
)

// Options configure Run. Every field documents its zero value.
type Options struct {
	// Addresses are the control-plane replicas' host:port, or one address in
	// front of them all (a load balancer or DNS name). At least one is required,
	// none empty or listed twice. The client starts at a random one, so that a
	// fleet spreads over the replicas, and moves to the next after every failed
	// connection or ended stream (see Run).
	Addresses []string
	// TLS secures the connection and checks the control plane's certificate.
	// Nil: plain text, for tests only (logged as a warning at every start).
	TLS *tls.Config
	// Token is the proxy's bootstrap token, sent as "authorization: Bearer"
	// metadata on every stream. It is never logged. Empty: none is sent.
	Token string
	// Role, Namespace and Name are the identity the proxy claims (the token must be
	// bound to it); Node tells this process apart from other replicas. Required.
	Role, Namespace, Name, Node string
	// DataDir keeps the last-known-good config (LKGFile). Empty: none is kept, and
	// a restart without the control plane starts with no config.
	DataDir string
	// Apply compiles and swaps in a config, or refuses it with the reason
	// (Gateway.Apply). Required.
	Apply func(set *config.Set, raw []byte) error
	// Logger receives connection and config events. Nil: slog.Default().
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the wait after a round in which every
	// address failed; it doubles from MinBackoff up to MaxBackoff, with jitter.
	// Zero: 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
}

// LogValue lets Options be logged without its token.
func (o Options) LogValue() slog.Value {
	tok := "none"
	if o.Token != "" {
		tok = "set (masked)"
	}
	return slog.GroupValue(slog.Any("addresses", o.Addresses), slog.Bool("tls", o.TLS != nil), slog.String("token", tok),
		slog.String("role", o.Role), slog.String("namespace", o.Namespace), slog.String("name", o.Name),
		slog.String("node", o.Node), slog.String("data_dir", o.DataDir))
}

func (o *Options) check() error {
	missing := func(field string) error { return fmt.Errorf("cpclient: Options.%s is required", field) }
	switch {
	case len(o.Addresses) == 0:
		return missing("Addresses")
	case o.Role == "":
		return missing("Role")
	case o.Namespace == "":
		return missing("Namespace")
	case o.Name == "":
		return missing("Name")
	case o.Node == "":
		return missing("Node")
	case o.Apply == nil:
		return missing("Apply")
	}
	seen := make(map[string]int, len(o.Addresses))
	for i, a := range o.Addresses {
		if a == "" {
			return fmt.Errorf("cpclient: Options.Addresses[%d] is empty", i)
		}
		if j, dup := seen[a]; dup {
			return fmt.Errorf("cpclient: Options.Addresses[%d] %q repeats Addresses[%d]", i, a, j)
		}
		seen[a] = i
	}
	o.Addresses = slices.Clone(o.Addresses) // Run keeps them; the caller may reuse its slice
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	return nil
}

// keepaliveParams ping the control plane on a quiet stream so that a dead one is
// noticed within about 40 s; controlplane/push.ServerOptions permits this rate.
var keepaliveParams = keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}

// connectParams bound one connection attempt (TCP and TLS handshakes) to 5 s. A
// replica whose host is gone answers nothing, not even a reset; with gRPC's
// default of 20 s the proxy would wait that long before moving to the next one.
var connectParams = grpc.ConnectParams{Backoff: grpcbackoff.DefaultConfig, MinConnectTimeout: 5 * time.Second}

type client struct {
	o         Options
	log       *slog.Logger
	running   string // the version being served, "" for none from the control plane
	resources int    // how many resources it has
	saved     string // the version in the LKG file
}

// Run applies the last-known-good config, if DataDir holds one, then streams
// configs from the control plane until ctx ends, reconnecting after every failure.
// It returns an error only for invalid options; otherwise nil once ctx ends.
//
// Reconnecting goes round the addresses, starting at a random one. After a failed
// connection or an ended stream the next address is dialled at once; only when
// every address has failed in a row (a full round) does the client wait, for the
// backoff of Options.MinBackoff doubling per failed round up to MaxBackoff. A
// stream that served (it carried a config, or stayed up longer than MaxBackoff)
// resets the backoff, and one that also lasted MinBackoff starts a new round, so
// the replica that dies under a proxy costs it one immediate redial elsewhere.
// A stream that is dropped sooner counts as a failure of its round: a control
// plane that accepts streams and ends them at once cannot make the proxy spin.
func Run(ctx context.Context, opts Options) error {
	if err := opts.check(); err != nil {
		return err
	}
	c := &client{o: opts, log: opts.Logger.With("component", "cpclient")}
	if opts.TLS == nil {
		c.log.Warn("connecting to the control plane WITHOUT TLS: config and the bootstrap token travel in clear text; for tests only")
	}
	c.startFromLastKnownGood()

	addrs := c.o.Addresses
	next := rand.N(len(addrs)) // so that a fleet spreads over the replicas
	failed := 0                // attempts in a row since the last wait that failed (or served for under MinBackoff)
	round := 0                 // full rounds in a row in which every address failed
	for ctx.Err() == nil {
		addr := addrs[next]
		next = (next + 1) % len(addrs)
		started := time.Now()
		answered, err := c.session(ctx, addr)
		if ctx.Err() != nil {
			break
		}
		lived := time.Since(started)
		served := answered || lived > c.o.MaxBackoff
		if served {
			round = 0
		}
		if served && lived >= c.o.MinBackoff {
			failed = 0
		} else {
			failed++
		}
		var delay time.Duration
		if failed >= len(addrs) {
			delay = backoff(c.o.MinBackoff, c.o.MaxBackoff, round)
			round++
			failed = 0
		}
		c.log.Warn("control plane stream ended; serving the running config and retrying",
			"address", addr, "err", err, "next_address", addrs[next], "retry_in", delay.Round(time.Millisecond),
			"running_version", c.running)
		if delay == 0 {
			continue
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return nil
}

// backoff is the wait after failed round n (0-based): min·2ⁿ capped at max, of which a
// random half is taken off so that proxies restarted together do not reconnect
// together.
func backoff(minD, maxD time.Duration, n int) time.Duration {
	d := maxD
	if n < 32 && minD<<n > 0 && minD<<n < maxD {
		d = minD << n
	}
	return d/2 + rand.N(d/2+1)
}

// startFromLastKnownGood applies the config saved in DataDir, before the control
// plane is even dialled.
func (c *client) startFromLastKnownGood() {
	if c.o.DataDir == "" {
		return
	}
	path := filepath.Join(c.o.DataDir, LKGFile)
	version, docs, err := loadLKG(c.o.DataDir)
	if errors.Is(err, fs.ErrNotExist) {
		c.log.Info("no last-known-good config; serving nothing until the control plane sends one", "path", path)
		return
	}
	var set *config.Set
	if err == nil {
		if set, err = config.Parse(path, docs); err == nil {
			err = c.o.Apply(set, docs)
		}
	}
	if err != nil {
		c.log.Error("the last-known-good config cannot be applied; waiting for the control plane", "path", path, "err", err)
		return
	}
	c.running, c.saved, c.resources = version, version, set.Len()
	c.log.Info("serving the last-known-good config until the control plane answers", "version", version, "path", path)
}

// session runs one stream to addr: Hello, then apply and answer every update. It
// reports whether the control plane sent anything.
func (c *client) session(ctx context.Context, addr string) (answered bool, err error) {
	creds := insecure.NewCredentials()
	if c.o.TLS != nil {
		creds = credentials.NewTLS(c.o.TLS.Clone())
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithKeepaliveParams(keepaliveParams),
		grpc.WithConnectParams(connectParams))
	if err != nil {
		return false, err
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.o.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.o.Token)
	}
	stream, err := cpv1.NewConfigPushClient(cc).Stream(ctx)
	if err != nil {
		return false, err
	}
	hello := &cpv1.Hello{Role: c.o.Role, Namespace: c.o.Namespace, Name: c.o.Name, Node: c.o.Node,
		RunningVersion: c.running, Build: build()}
	if err := stream.Send(&cpv1.StreamRequest{Kind: &cpv1.StreamRequest_Hello{Hello: hello}}); err != nil {
		return false, err
	}
	c.log.Info("control plane stream open", "address", addr, "running_version", c.running)
	for {
		u, err := stream.Recv()
		if err != nil {
			return answered, err
		}
		answered = true
		ack := c.apply(u)
		if err := stream.Send(&cpv1.StreamRequest{Kind: &cpv1.StreamRequest_Ack{Ack: ack}}); err != nil {
			return answered, err
		}
	}
}

// apply parses and applies one update and saves it as last-known-good; on any
// failure the running config keeps serving and the answer is a NACK.
func (c *client) apply(u *cpv1.ConfigUpdate) *cpv1.Ack {
	version := u.GetVersion()
	set, err := config.Parse("control plane config "+version, u.GetDocuments())
	if err == nil && set.Len() == 0 && c.resources > 0 {
		// A control plane that lost its data looks exactly like this; taking every
		// listener down on its word would turn its loss into an outage. To retire
		// a proxy, stop it.
		err = fmt.Errorf("refusing an empty config while serving %d resources (version %s)", c.resources, c.running)
	}
	if err == nil {
		err = c.o.Apply(set, u.GetDocuments())
	}
	if err != nil {
		c.log.Error("config from the control plane refused (NACK); the running config keeps serving",
			"version", version, "running_version", c.running, "err", err)
		return &cpv1.Ack{Version: version, Accepted: false, Error: err.Error()}
	}
	c.running, c.resources = version, set.Len()
	if c.o.DataDir != "" && c.saved != version {
		if err := saveLKG(c.o.DataDir, version, u.GetDocuments()); err != nil {
			c.log.Error("saving the last-known-good config failed; a restart without the control plane would start from an older one",
				"version", version, "err", err)
		} else {
			c.saved = version
		}
	}
	c.log.Info("config from the control plane applied", "version", version, "resources", set.Len())
	return &cpv1.Ack{Version: version, Accepted: true}
}

// build names this binary's build for the control plane's status.
func build() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Path + "@" + bi.Main.Version
	}
	return ""
}
