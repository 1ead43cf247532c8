package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/portcullis/portcullis/controlplane/store"
)

// openStore opens the store the config names: an etcd cluster, or an embedded
// member under the configured directory (default: "store" under dataDir).
func openStore(ctx context.Context, c StoreConfig, dataDir string, log *slog.Logger) (store.Store, error) {
	storeLog := log.With("component", "store")
	if e := c.Etcd; e != nil {
		cc := store.ClusterConfig{Endpoints: e.Endpoints, Prefix: e.Prefix, Username: e.Username, Logger: storeLog}
		if e.PasswordFile != "" {
			b, err := os.ReadFile(e.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("store.etcd.passwordFile: %w", err)
			}
			cc.Password = strings.TrimRight(string(b), "\r\n")
		}
		if t := e.TLS; t != nil {
			tc := &tls.Config{MinVersion: tls.VersionTLS12}
			if t.CAFile != "" {
				pool, err := loadPool(t.CAFile)
				if err != nil {
					return nil, fmt.Errorf("store.etcd.tls.caFile: %w", err)
				}
				tc.RootCAs = pool
			}
			if t.CertFile != "" {
				pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
				if err != nil {
					return nil, fmt.Errorf("store.etcd.tls.certFile/keyFile: %w", err)
				}
				tc.Certificates = []tls.Certificate{pair}
			}
			cc.TLS = tc
		}
		st, err := store.OpenCluster(ctx, cc)
		if err != nil {
			return nil, fmt.Errorf("store.etcd: %w", err)
		}
		return st, nil
	}
	dir := ""
	if c.Embedded != nil {
		dir = c.Embedded.Dir
	}
	if dir == "" {
		if dataDir == "" {
			return nil, fmt.Errorf("store.embedded.dir: required when -data is not given")
		}
		dir = filepath.Join(dataDir, "store")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store.embedded.dir: %w", err)
	}
	st, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: dir, Logger: storeLog})
	if err != nil {
		return nil, fmt.Errorf("store.embedded: %w", err)
	}
	return st, nil
}
