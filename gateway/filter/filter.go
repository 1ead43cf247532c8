// Package filter is the one contract every request filter implements, and the
// registry that maps a filter type name (as written in a Route's filters list) to
// the factory that builds it from config.
//
// Lifecycle: a Factory runs once per config snapshot, when the snapshot is compiled;
// it decodes and checks its config and returns a Filter (or an error that refuses
// the whole snapshot). The Filter then serves every request of that snapshot, from
// many goroutines at once, so it must not keep per-request state in itself. When the
// snapshot is retired, filters that implement io.Closer are closed.
//
// Files: a config field that names a file must end in "File" (keyFile, secretFile)
// or, for a list, in "Files" (protoFiles). The gateway finds such fields in every
// filter config (config.Raw.FileFields) and makes the files' contents part of the
// config's version and watches them, so that a rotated key or secret is picked up
// by a reload like a changed config.
//
// It is not for: routing, upstream selection or observability; those are the core's.
package filter

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/portcullis/portcullis/gateway/config"
)

// Handler is the next step of a chain. It returns an error instead of writing one, so
// that the core answers every failure the same way (status, body, access log).
type Handler interface {
	ServeHTTP(w http.ResponseWriter, r *http.Request) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// ServeHTTP calls f.
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

// Filter is one step of a route's chain. It may answer the request itself (and not
// call next), change the request before calling next, or wrap w to see the response.
// A filter must not modify the inbound request in place: use r.Clone or WithContext
// and pass the copy on, as net/http asks of middleware.
type Filter interface {
	Handle(w http.ResponseWriter, r *http.Request, next Handler) error
}

// Func adapts a function to Filter.
type Func func(w http.ResponseWriter, r *http.Request, next Handler) error

// Handle calls f.
func (f Func) Handle(w http.ResponseWriter, r *http.Request, next Handler) error {
	return f(w, r, next)
}

// Error is a failure with the HTTP status the client should see. Reason is a short
// machine-readable word for logs and metrics ("fault_abort", "body_too_large");
// Err, if set, is the cause, logged but never sent to the client.
type Error struct {
	Status int
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Status, e.Reason, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with status and reason and a formatted cause.
func Errorf(status int, reason, format string, args ...any) *Error {
	return &Error{Status: status, Reason: reason, Err: fmt.Errorf(format, args...)}
}

// StatusOf returns the status an error should be answered with: an *Error's own,
// or 500 for anything else (a bug: the filter should have said what went wrong).
func StatusOf(err error) (int, string) {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Status, fe.Reason
	}
	return http.StatusInternalServerError, "internal_error"
}

// Chain folds filters around a terminal handler, once, at compile time. The first
// filter runs first.
func Chain(filters []Filter, terminal Handler) Handler {
	h := terminal
	for i := len(filters) - 1; i >= 0; i-- {
		h = link{f: filters[i], next: h}
	}
	return h
}

type link struct {
	f    Filter
	next Handler
}

func (l link) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	return l.f.Handle(w, r, l.next)
}

// Upstreams lets a filter send requests to a cluster of the same snapshot (for
// mirroring, or for calling an auth service) through the core's load balancing,
// health checks and circuit breakers.
type Upstreams interface {
	// Upstream returns a handler that forwards a request to the named cluster, or
	// false when the snapshot has no such cluster.
	Upstream(cluster string) (Handler, bool)
}

// Build is what a Factory gets: its config and the services of the snapshot.
type Build struct {
	// Config is the filter's config as written; decode it with Config.Decode, which
	// refuses unknown fields and names file, line and field in its errors.
	Config config.Raw
	// Route is "namespace/name#rule" of the rule the filter belongs to, for logs and metrics.
	Route string
	// Upstreams resolves clusters of the snapshot being built.
	Upstreams Upstreams
	// Logger is the proxy's logger.
	Logger *slog.Logger
	// Events receives security events (refused credentials, abuse), counted and
	// rate-limited in the log by the core. Nil: the filter logs on Logger instead.
	Events Events
	// DataDir is the proxy's directory for local state (the -data flag), where a
	// filter may keep what must survive a restart (a last-known-good key set, say).
	// Empty: keep nothing on disk.
	DataDir string
}

// Events is the core's sink for security events (SM-DR21).
type Events interface {
	SecurityEvent(kind, remoteAddr, detail string)
}

// Factory builds a filter from its config.
type Factory func(b Build) (Filter, error)

var (
	mu        sync.RWMutex
	factories = map[string]Factory{}
)

// Register makes a filter type available to configs. It panics on a duplicate name,
// which is a programming error found at start-up. Call it from an init function of
// the filter's package; the binary chooses which filters exist by importing them.
func Register(typ string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[typ]; dup {
		panic("filter: duplicate registration of " + typ)
	}
	factories[typ] = f
}

// Lookup returns the factory for a filter type.
func Lookup(typ string) (Factory, bool) {
	mu.RLock()
	defer mu.RUnlock()
	f, ok := factories[typ]
	return f, ok
}

// Types lists the registered filter types, sorted, for error messages and docs.
func Types() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(factories))
	for k := range factories {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Problems collects every mistake found in a filter's config, so that one load
// reports them all. Each names its field relative to the filter's config
// ("delay.percent"). Err returns them as one plain error, which the snapshot
// compiler positions at the filter's config (file, line, field path).
type Problems []string

// Add records one problem with a field.
func (p *Problems) Add(field, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	*p = append(*p, msg)
}

// Err returns nil, or every problem joined into one error.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New(strings.Join(p, "; "))
}
