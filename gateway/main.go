package gateway

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/gateway/cpclient"
	"github.com/portcullis/portcullis/gateway/observe"
)

// Demo prepares an embedded default config for a binary run without -config: it
// returns the config paths to load, a message for the user, and a stop function.
type Demo func(dataDir string, log *slog.Logger) (paths []string, message string, stop func(), err error)

// Main is the whole main function of every role's binary: the same flags for all
// (-config, -admin, -data, -controlplane and its companions, -log-level), then Run
// until SIGINT/SIGTERM. demo may be nil; then -config or -controlplane is required.
func Main(role string, demo Demo) {
	fs := flag.NewFlagSet(role, flag.ExitOnError)
	var configs multiFlag
	fs.Var(&configs, "config", "config file or directory of YAML resources (repeatable); static mode")
	adminAddr := fs.String("admin", "127.0.0.1:9901", "admin listener address (/metrics, /healthz, /readyz, /config); empty to disable")
	dataDir := fs.String("data", "", "directory for local state (default: a directory under the user cache dir)")
	cp := addControlPlaneFlags(fs)
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nPortcullis %s.\n\nFlags:\n", role, role)
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])
	if os.Getenv("GOGC") == "" {
		// A proxy's live heap is small (a few MiB) and its garbage is per request:
		// collecting at 5x the live heap instead of 2x cuts GC work per request by
		// more than half for ~12 MiB more RSS under load (docs/performance.md).
		// GOGC in the environment still wins.
		debug.SetGCPercent(400)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fail("-log-level: %v", err)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	log := slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	// Access-log lines are batched (at most 64 KiB or 200 ms), other lines are not:
	// docs/performance.md.
	accessOut := observe.NewLineBuffer(os.Stderr, 64<<10, 200*time.Millisecond)
	defer accessOut.Close()
	accessLog := slog.New(slog.NewJSONHandler(accessOut, hopts))
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	cpOpts, dynamic, err := cp.options(role, configs, given)
	if err != nil {
		fail("%v", err)
	}
	if dynamic && cpOpts.TLS == nil {
		fmt.Fprintln(os.Stderr, "WARNING: -controlplane-insecure: config and the bootstrap token travel in clear text. Never use this outside tests.")
	}
	if *dataDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		*dataDir = base + "/portcullis/" + role
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		fail("-data: %v", err)
	}
	paths := []string(configs)
	if len(paths) == 0 && !dynamic {
		if demo == nil {
			fail("-config or -controlplane is required")
		}
		p, msg, stop, err := demo(*dataDir, log)
		if err != nil {
			fail("demo: %v", err)
		}
		defer stop()
		paths = p
		fmt.Fprintln(os.Stderr, msg)
	}
	gopts := Options{Role: role, ConfigPaths: paths, Dynamic: dynamic, AdminAddr: *adminAddr, DataDir: *dataDir, Logger: log, AccessLogger: accessLog}
	if dynamic {
		// For listeners with tls.acme.storage {controlPlane: true}; it dials only
		// once one of them needs it. Closing it releases the ACME locks it holds.
		certStorage, err := controlPlaneCertStorage(cpOpts, log)
		if err != nil {
			fail("%v", err)
		}
		defer certStorage.Close()
		gopts.ControlPlaneCertStorage = certStorage
	}
	g, err := New(gopts)
	if err != nil {
		fail("%v", err)
	}
	if err := g.Start(); err != nil {
		fail("%v", err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if dynamic {
		cpOpts.Apply, cpOpts.DataDir, cpOpts.Logger = g.Apply, *dataDir, log
		go func() {
			if err := cpclient.Run(ctx, cpOpts); err != nil {
				log.Error("control plane client", "err", err)
				cancel()
			}
		}()
	}
	if err := g.Run(ctx); err != nil {
		log.Error("shutdown", "err", err)
		accessOut.Close() // os.Exit runs no deferred calls
		os.Exit(1)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "error: "+format+"\n", args...)
	os.Exit(2)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
