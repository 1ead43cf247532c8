// Package headers is the "headers" filter: it sets, adds and removes request headers
// before the request is passed on, and response headers when the response's headers
// are written. Values are templates that may name a few properties of the request
// (%{client_ip}, %{host}, %{path}, %{method}, %{scheme}), parsed once per config
// snapshot.
//
// It is not for: the Host header (use the route's forward.rewrite.host), hop-by-hop
// headers or Content-Length (the proxy owns connection management and framing), or
// headers of error responses the core answers itself (a *filter.Error returned by a
// later step never passes through this filter's response writer).
package headers

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// headersFilter is immutable after Factory: it serves every request of its snapshot.
type headersFilter struct {
	req  ops
	resp ops
}

func (f *headersFilter) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	in := r
	if !f.req.empty() {
		// The inbound request belongs to the caller: change a shallow copy with its
		// own header map. Clone copies all values in one allocation.
		h := r.Header.Clone()
		if h == nil {
			h = make(http.Header, len(f.req.set)+len(f.req.add))
		}
		f.req.apply(h, in)
		r2 := new(http.Request)
		*r2 = *r
		r2.Header = h
		r = r2
	}
	if !f.resp.empty() {
		w = &responseWriter{rw: w, ops: &f.resp, req: in}
	}
	return next.ServeHTTP(w, r)
}

// ops are one side's compiled changes: canonical names, sorted, templates parsed.
type ops struct {
	remove []string
	set    []headerOp
	add    []headerOp
}

type headerOp struct {
	name  string // canonical, so the map is indexed directly with no per-request canonicalisation
	value template
}

func (o *ops) empty() bool { return len(o.remove) == 0 && len(o.set) == 0 && len(o.add) == 0 }

// apply changes h; the templates read r (the request as this filter received it).
func (o *ops) apply(h http.Header, r *http.Request) {
	for _, k := range o.remove {
		delete(h, k)
	}
	for i := range o.set {
		op := &o.set[i]
		h[op.name] = []string{op.value.expand(r)}
	}
	for i := range o.add {
		op := &o.add[i]
		// Header.Clone and the server give each key a slice with no spare capacity,
		// so append never writes into a slice shared with another map.
		h[op.name] = append(h[op.name], op.value.expand(r))
	}
}

// responseWriter applies the response ops once, just before the final status line
// and headers go out. It is per request, used by one goroutine, as net/http requires.
type responseWriter struct {
	rw      http.ResponseWriter
	ops     *ops
	req     *http.Request
	applied bool
}

func (w *responseWriter) Header() http.Header { return w.rw.Header() }

func (w *responseWriter) WriteHeader(code int) {
	// 1xx responses other than 101 are informational and followed by the real one;
	// applying "add" to them too would add the value twice.
	if !w.applied && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.apply()
	}
	w.rw.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.applied {
		w.apply() // Write without WriteHeader sends 200 with the headers as they are now
	}
	return w.rw.Write(b)
}

// FlushError is what http.ResponseController.Flush calls. A flush before any write
// sends the headers, so they are changed first.
func (w *responseWriter) FlushError() error {
	if !w.applied {
		w.apply()
	}
	return http.NewResponseController(w.rw).Flush()
}

// Flush makes the writer an http.Flusher for code that type-asserts instead of using
// http.ResponseController.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach the server's writer for Hijack,
// deadlines and full duplex.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.rw }

func (w *responseWriter) apply() {
	w.applied = true
	w.ops.apply(w.rw.Header(), w.req)
}

// ---------------------------------------------------------------------------
// Templates

// variable is a property of the request a template may name.
type variable uint8

const (
	varNone     variable = iota
	varClientIP          // the client's IP as the core determined it (trusted proxies honoured)
	varHost              // Host as the client sent it, port included
	varPath              // path as the client sent it, still escaped
	varMethod            // request method
	varScheme            // "https" when the client connected over TLS, else "http"
)

var variables = map[string]variable{
	"client_ip": varClientIP,
	"host":      varHost,
	"path":      varPath,
	"method":    varMethod,
	"scheme":    varScheme,
}

// template is a header value parsed at build time. A value with no variable is kept
// as one string and expanding it costs nothing.
type template struct {
	constant string
	segs     []segment // nil when the value is constant
	litLen   int       // bytes of literal text, to size the builder once
}

// segment is literal text or one variable.
type segment struct {
	lit string
	v   variable
}

// parseTemplate reads a value: "%{name}" is a variable, "%%" a literal '%', and any
// other '%' stays as written (so "50%" needs no escaping). Literal text must be a
// valid field value: no control characters other than tab.
func parseTemplate(s string) (template, error) {
	var (
		segs []segment
		lit  strings.Builder
		t    template
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' || i+1 == len(s) || (s[i+1] != '{' && s[i+1] != '%') {
			if !validValueByte(c) {
				return t, fmt.Errorf("value %q contains a control character (%#x); CR, LF and NUL are never allowed", s, c)
			}
			lit.WriteByte(c)
			continue
		}
		if s[i+1] == '%' {
			lit.WriteByte('%')
			i++
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return t, fmt.Errorf("value %q: %%{ at offset %d is not closed with }", s, i)
		}
		name := s[i+2 : i+2+end]
		v, ok := variables[name]
		if !ok {
			return t, fmt.Errorf("value %q: unknown variable %%{%s} (known: client_ip, host, path, method, scheme)", s, name)
		}
		if lit.Len() > 0 {
			segs = append(segs, segment{lit: lit.String()})
			t.litLen += lit.Len()
			lit.Reset()
		}
		segs = append(segs, segment{v: v})
		i += 2 + end
	}
	if len(segs) == 0 {
		t.constant = lit.String()
		return t, nil
	}
	if lit.Len() > 0 {
		segs = append(segs, segment{lit: lit.String()})
		t.litLen += lit.Len()
	}
	t.segs = segs
	return t, nil
}

// validValueByte refuses control characters: CR and LF would split the field (header
// injection) and NUL is refused by every HTTP parser. Tab is allowed, as in RFC 9110.
func validValueByte(c byte) bool { return c == '\t' || (c >= 0x20 && c != 0x7f) }

func (t *template) expand(r *http.Request) string {
	if t.segs == nil {
		return t.constant
	}
	if len(t.segs) == 1 {
		return value(t.segs[0].v, r) // the common "%{client_ip}" needs no builder
	}
	var b strings.Builder
	b.Grow(t.litLen + 32)
	for _, s := range t.segs {
		if s.v == varNone {
			b.WriteString(s.lit)
		} else {
			b.WriteString(value(s.v, r))
		}
	}
	return b.String()
}

// value returns one variable, always safe to put in a header: the path is the
// escaped form and the host, the one part that is copied from the client without a
// fixed grammar here, is cleaned of control characters.
func value(v variable, r *http.Request) string {
	switch v {
	case varClientIP:
		// The core's idea of the client (X-Forwarded-For from trusted proxies
		// honoured), so that the header agrees with the access log.
		if info := proxy.InfoFrom(r.Context()); info != nil && info.ClientIP.IsValid() {
			return info.ClientIP.Unmap().String()
		}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			return host
		}
		return clean(r.RemoteAddr)
	case varHost:
		return clean(r.Host)
	case varPath:
		if r.URL == nil {
			return ""
		}
		return clean(r.URL.EscapedPath())
	case varMethod:
		return clean(r.Method)
	case varScheme:
		if info := proxy.InfoFrom(r.Context()); info != nil && info.Scheme != "" {
			return info.Scheme
		}
		if r.TLS != nil {
			return "https"
		}
		return "http"
	}
	return ""
}

// clean drops control characters. net/http's server already refuses them in these
// fields, so this is a guard for requests built by other code (tests, other
// listeners); it does not allocate when there is nothing to drop.
func clean(s string) string {
	for i := 0; i < len(s); i++ {
		if !validValueByte(s[i]) {
			b := make([]byte, 0, len(s))
			for j := 0; j < len(s); j++ {
				if validValueByte(s[j]) {
					b = append(b, s[j])
				}
			}
			return string(b)
		}
	}
	return s
}
