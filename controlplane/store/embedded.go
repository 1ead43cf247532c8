package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

// EmbeddedConfig configures the etcd member OpenEmbedded runs in-process.
type EmbeddedConfig struct {
	// Dir holds the member's data (etcd's data-dir: WAL, snapshots, the bbolt
	// backend). Required. Reopening the same Dir keeps the data.
	Dir string
	// ClientAddr is where the member serves etcd's client API, a loopback
	// host:port (default "127.0.0.1:0": a port the kernel picks; Endpoints says
	// which). The member has neither TLS nor auth, so only loopback is accepted.
	ClientAddr string
	// PeerAddr is the member's raft peer listener, loopback only (default
	// "127.0.0.1:0"). A single member never dials it, but etcd requires one.
	PeerAddr string
	// Logger receives etcd's warnings and errors (tagged component=etcd); nil
	// discards them.
	Logger *slog.Logger
}

const (
	embeddedMemberName = "portcullis"
	// embeddedStartTimeout bounds waiting for the member to be ready even when the
	// caller's ctx has no deadline: replaying a large WAL takes a while, a member
	// that never becomes ready is broken.
	embeddedStartTimeout = 2 * time.Minute
	// embeddedCompactionRetention is how much history the member keeps: a watch
	// resumed from an older revision gets a compaction error and must List again.
	embeddedCompactionRetention = "1h"
)

// OpenEmbedded starts one etcd member in this process with its data under
// cfg.Dir, waits until it serves, and returns a store connected to it. Close stops
// the member. Other processes on the machine can share it through Endpoints and
// OpenCluster.
func OpenEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Etcd, error) {
	if cfg.Dir == "" {
		return nil, errors.New("store: EmbeddedConfig.Dir is required")
	}
	clientURL, err := loopbackURL("EmbeddedConfig.ClientAddr", cfg.ClientAddr)
	if err != nil {
		return nil, err
	}
	peerURL, err := loopbackURL("EmbeddedConfig.PeerAddr", cfg.PeerAddr)
	if err != nil {
		return nil, err
	}

	ec := embed.NewConfig()
	ec.Name = embeddedMemberName
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{clientURL}
	ec.AdvertiseClientUrls = []url.URL{clientURL}
	ec.ListenPeerUrls = []url.URL{peerURL}
	ec.AdvertisePeerUrls = []url.URL{peerURL}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.InitialClusterToken = "portcullis-embedded"
	ec.EnableGRPCGateway = false
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = embeddedCompactionRetention
	// etcd logs every step at info; warnings and errors are what an operator needs.
	ec.LogLevel = "warn"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(cfg.Logger, zapcore.WarnLevel))

	member, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("store: starting embedded etcd in %s: %w", cfg.Dir, err)
	}
	if err := waitReady(ctx, member); err != nil {
		member.Close()
		return nil, fmt.Errorf("store: embedded etcd in %s: %w", cfg.Dir, err)
	}
	endpoint := "http://" + member.Clients[0].Addr().String()
	s, err := OpenCluster(ctx, ClusterConfig{Endpoints: []string{endpoint}, Logger: cfg.Logger})
	if err != nil {
		member.Close()
		return nil, err
	}
	s.member = member
	return s, nil
}

func waitReady(ctx context.Context, member *embed.Etcd) error {
	timer := time.NewTimer(embeddedStartTimeout)
	defer timer.Stop()
	select {
	case <-member.Server.ReadyNotify():
		return nil
	case err := <-member.Err():
		return fmt.Errorf("stopped while starting: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("not ready: %w", ctx.Err())
	case <-timer.C:
		return fmt.Errorf("not ready after %v", embeddedStartTimeout)
	}
}

// loopbackURL turns a loopback host:port (empty: 127.0.0.1:0) into an http URL,
// naming field in its error.
func loopbackURL(field, addr string) (url.URL, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return url.URL{}, fmt.Errorf("store: %s %q: %w", field, addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return url.URL{}, fmt.Errorf("store: %s %q: must be a loopback IP address (the embedded member has no TLS or auth)", field, addr)
	}
	return url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}, nil
}
