// Command controlplane is the Portcullis control plane: it stores config resources,
// pushes each proxy its part of them, keeps the service registry, and serves the
// admin API (gRPC and HTTP/JSON) that portctl talks to.
//
// With -config it runs as configured (controlplane/README.md). Without, it runs in
// development mode: an embedded store, a self-signed certificate, an admin token
// and a proxy bootstrap token under -data, listening on 127.0.0.1 only.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/portcullis/portcullis/controlplane/server"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	cancel()
	os.Exit(code)
}

// run is main without the process: it returns the exit code (0 after a clean
// stop, 1 on a runtime failure, 2 on a usage or config error).
func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "control plane config file (without it: development mode)")
	dataDir := fs.String("data", "", "directory for the embedded store and development files (default: a directory under the user cache dir)")
	listen := fs.String("listen", "", "gRPC address, overriding the config's listen")
	httpListen := fs.String("http-listen", "", `HTTP/JSON API address, overriding the config's httpListen ("off" disables it)`)
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: controlplane [flags]\n\nPortcullis control plane.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "error: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "error: -log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if *dataDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		*dataDir = filepath.Join(base, "portcullis", "controlplane")
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		fmt.Fprintf(stderr, "error: -data: %v\n", err)
		return 2
	}

	var (
		cfg   *server.Config
		files *server.DevFiles
	)
	if *configPath != "" {
		c, err := server.LoadConfig(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			return 2
		}
		cfg = c
	} else {
		c, f, err := server.DevConfig(*dataDir)
		if err != nil {
			fmt.Fprintf(stderr, "error: development mode: %v\n", err)
			return 1
		}
		cfg, files = c, &f
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *httpListen != "" {
		cfg.HTTPListen = *httpListen
	}
	if files != nil {
		fmt.Fprintf(stderr, devBanner, *dataDir, files.CertFile, files.AdminToken, files.ProxyToken, cfg.Listen, files.CertFile, files.AdminToken)
		defer fmt.Fprintf(stderr, "development mode stopped; its data stays in %s\n", *dataDir)
	}
	srv, err := server.New(ctx, server.Options{Config: cfg, DataDir: *dataDir, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "serving gRPC on %s, HTTP/JSON on %s\n", srv.GRPCAddr(), srv.HTTPAddr())
	if err := srv.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

const devBanner = `Development mode (no -config): do not use it in production.
  data:              %s
  server CA:         %s
  admin token:       %s (role admin: everything)
  proxy token:       %s (ingress proxies of namespace default)
Try:
  portctl --server %s --ca %s --token-file %s status
`
