// Package admin serves the admin listener of every role: Prometheus metrics,
// liveness and readiness, and the running config with secrets redacted.
//
// It is loopback-only by default and must never be exposed to clients: it has no
// authentication of its own (the control plane's admin API does; this one is local).
// It is not for changing anything: every endpoint is read-only.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// State is what the admin pages read from the gateway.
type State interface {
	// Ready reports whether a config is loaded and every listener is serving.
	Ready() bool
	// Config returns the running config's version, its documents and the live
	// state of its upstreams.
	Config() (version string, documents any, upstreams any)
}

// Server is the admin listener.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// New builds the admin handler: /metrics, /healthz, /readyz, /config, /debug/pprof/.
func New(metrics http.Handler, st State) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !st.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	// Profiles, for finding where CPU and memory go under real load. Loopback only,
	// like the rest of this listener.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		version, docs, ups := st.Config()
		red, err := Redact(docs)
		if err != nil {
			http.Error(w, "cannot render config: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"version": version, "resources": red, "upstreams": ups})
	})
	return mux
}

// Listen starts the admin listener on addr. A non-loopback address is allowed but
// logged as a warning: these pages show the topology of the mesh.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn("admin listener is not on loopback; it has no authentication", "addr", ln.Addr().String())
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}, ln: ln, log: log}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener failed", "err", err)
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the admin listener.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Redact renders documents (via their YAML form, so field names are the file's)
// into generic values with secret-looking values masked: any string under a key
// that names a credential (authorization, cookie, token, secret, password, api key),
// in specs and in filter configs alike. File paths (certFile, keyFile, secretFile)
// are kept: they name where a secret is, not the secret.
func Redact(docs any) (any, error) {
	b, err := yaml.Marshal(docs)
	if err != nil {
		return nil, err
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return redact(v, ""), nil
}

func redact(v any, key string) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = redact(e, k)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = redact(e, key)
		}
		return t
	case string:
		if sensitive(key) {
			return "***"
		}
	}
	return v
}

func sensitive(key string) bool {
	k := strings.ToLower(key)
	if strings.HasSuffix(k, "file") {
		return false
	}
	for _, s := range []string{"authorization", "cookie", "token", "secret", "password", "api-key", "apikey", "api_key", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}
