// Package cors is the "cors" filter: it answers CORS preflight requests at the
// gateway and adds the CORS response headers to actual requests, per route, so that
// cross-origin policy lives in the gateway's config and never in the services behind
// it (SM-DR27). It is built on github.com/rs/cors, with its own origin matching:
// exact origins, and patterns whose wildcard is one whole DNS label.
//
// The gateway's answer is authoritative: CORS headers an upstream sets on its
// response are replaced by the filter's, and Vary: Origin is kept when the upstream
// sends a Vary of its own, so that a shared cache never hands one origin's answer to
// another.
//
// It is not for: protecting the upstream. CORS tells browsers which pages may read
// a response; a refused origin's request still reaches the upstream (the browser
// hides the answer), and non-browser clients ignore CORS entirely. Authentication
// and CSRF protection belong elsewhere.
package cors

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/rs/cors"

	"github.com/portcullis/portcullis/gateway/filter"
)

// EventRefused is the security-event kind logged for a request from an origin the
// route does not allow.
const EventRefused = "cors_refused"

// corsFilter is immutable after Factory: it serves every request of its snapshot.
type corsFilter struct {
	c       *cors.Cors
	origins *originSet // nil when every origin is allowed ("*")
	route   string
	log     *slog.Logger // nil: refusals are not logged
}

func (f *corsFilter) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	// A preflight is OPTIONS with Origin and Access-Control-Request-Method (Fetch
	// standard); an OPTIONS without Origin is no browser's and goes on as a request.
	if r.Method == http.MethodOptions && nonEmpty(r.Header["Access-Control-Request-Method"]) && nonEmpty(r.Header["Origin"]) {
		// rs/cors sets the headers (none when refused) and writes 204: the
		// browser reads a refusal from the missing Access-Control-Allow-Origin.
		f.c.HandlerFunc(w, r)
		if _, ok := w.Header()["Access-Control-Allow-Origin"]; !ok {
			f.refused(r, true)
		}
		return nil
	}
	cw := &writer{rw: w, f: f, r: r}
	err := next.ServeHTTP(cw, r)
	if !cw.applied {
		// Nothing was written through cw: an error the core will answer on w, or a
		// handler that wrote no body (net/http sends the header map after it
		// returns). Either way the answer must carry the CORS headers, or the page
		// cannot even read the error status.
		f.apply(w.Header(), r)
	}
	return err
}

// upstreamCORS are the response headers a browser reads on an actual (not
// preflight) response. Any the upstream set are dropped before the filter's own are
// applied, so that a service's own CORS cannot widen the gateway's policy.
var upstreamCORS = [...]string{
	"Access-Control-Allow-Origin",
	"Access-Control-Allow-Credentials",
	"Access-Control-Expose-Headers",
}

// apply sets the CORS headers of an actual request on h, once, as the response
// headers are about to go out.
func (f *corsFilter) apply(h http.Header, r *http.Request) {
	for _, k := range upstreamCORS {
		delete(h, k)
	}
	f.c.HandlerFunc(headerOnly(h), r) // an actual request: rs/cors only touches headers
	if nonEmpty(r.Header["Origin"]) {
		if _, ok := h["Access-Control-Allow-Origin"]; !ok {
			f.refused(r, false)
		}
	}
}

// refused logs a security event for a request whose origin (or method, or headers)
// the route does not allow. There is no metrics hook for filters yet, so the log
// line is the only count.
func (f *corsFilter) refused(r *http.Request, preflight bool) {
	if f.log == nil || !f.log.Enabled(r.Context(), slog.LevelDebug) {
		return
	}
	origin := r.Header.Get("Origin")
	why := "origin"
	if f.origins == nil || f.origins.allowed(origin) {
		why = "method or headers"
	}
	if len(origin) > 256 {
		origin = origin[:256] + "…" // an attacker chooses it; keep log lines bounded
	}
	f.log.LogAttrs(r.Context(), slog.LevelDebug, "security event",
		slog.String("kind", EventRefused),
		slog.String("route", f.route),
		slog.String("origin", origin),
		slog.String("method", r.Method),
		slog.Bool("preflight", preflight),
		slog.String("why", why),
	)
}

func nonEmpty(v []string) bool { return len(v) > 0 && v[0] != "" }

// originSet matches a request's Origin against exact origins and label patterns.
// Immutable after Factory.
type originSet struct {
	exact    map[string]struct{} // lower case; may hold "null"
	patterns []pattern
}

// allowed is rs/cors's AllowOriginFunc. Origins are compared without regard to
// case, as rs/cors does; browsers send them in lower case, so the fast path is
// one map lookup.
func (s *originSet) allowed(origin string) bool {
	if _, ok := s.exact[origin]; ok {
		return true
	}
	for i := range s.patterns {
		if s.patterns[i].match(origin) {
			return true
		}
	}
	if hasUpper(origin) {
		return s.allowed(strings.ToLower(origin))
	}
	return false
}

// pattern is an origin whose leftmost host label is "*": it matches origins that
// have exactly one DNS label in its place, so "https://*.example.com" matches
// "https://a.example.com" but neither "https://a.b.example.com" nor
// "https://example.com".
type pattern struct {
	prefix string // "https://"
	suffix string // ".example.com" or ".example.com:8443"
}

func (p pattern) match(o string) bool {
	if len(o) <= len(p.prefix)+len(p.suffix) || !strings.HasPrefix(o, p.prefix) || !strings.HasSuffix(o, p.suffix) {
		return false
	}
	return validLabel(o[len(p.prefix) : len(o)-len(p.suffix)])
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

// writer applies the CORS headers once, just before the final status line and
// headers go out, after the upstream's headers have been copied onto the map. It is
// per request, used by one goroutine, as net/http requires.
type writer struct {
	rw      http.ResponseWriter
	f       *corsFilter
	r       *http.Request
	applied bool
}

func (w *writer) Header() http.Header { return w.rw.Header() }

func (w *writer) WriteHeader(code int) {
	// 1xx other than 101 are informational; the final response follows.
	if !w.applied && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.apply()
	}
	w.rw.WriteHeader(code)
}

func (w *writer) Write(b []byte) (int, error) {
	if !w.applied {
		w.apply()
	}
	return w.rw.Write(b)
}

// FlushError is what http.ResponseController.Flush calls; a flush before any write
// sends the headers, so they are set first.
func (w *writer) FlushError() error {
	if !w.applied {
		w.apply()
	}
	return http.NewResponseController(w.rw).Flush()
}

// Flush makes the writer an http.Flusher for code that type-asserts (the proxy's
// streaming does).
func (w *writer) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach the server's writer for Hijack,
// deadlines and full duplex.
func (w *writer) Unwrap() http.ResponseWriter { return w.rw }

func (w *writer) apply() {
	w.applied = true
	w.f.apply(w.rw.Header(), w.r)
}

// headerOnly is the http.ResponseWriter rs/cors gets for actual requests, where it
// only sets headers; it turns a write (which would be a bug) into nothing rather
// than a second status line.
type headerOnly http.Header

func (h headerOnly) Header() http.Header       { return http.Header(h) }
func (headerOnly) Write(b []byte) (int, error) { return len(b), nil }
func (headerOnly) WriteHeader(int)             {}
