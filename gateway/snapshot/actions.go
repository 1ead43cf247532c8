package snapshot

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
)

// redirect answers with a Location built from the request and the rule.
type redirect struct {
	scheme, host, path, prefix, matched string
	port                                int
	status                              int
	stripQuery                          bool
}

func newRedirect(rd *config.Redirect, pm *config.PathMatch) *redirect {
	r := &redirect{scheme: rd.Scheme, host: rd.Host, port: rd.Port, path: rd.Path, prefix: rd.Prefix, status: rd.Status, stripQuery: rd.StripQuery}
	if r.status == 0 {
		r.status = http.StatusMovedPermanently
	}
	if pm != nil {
		r.matched = pm.Prefix
	}
	return r
}

func (rd *redirect) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	scheme := rd.scheme
	if scheme == "" {
		scheme = "http"
		if info := proxy.InfoFrom(r.Context()); info != nil {
			scheme = info.Scheme
		}
	}
	host := rd.host
	if host == "" {
		host = hostOnly(r.Host)
	}
	switch {
	case rd.port != 0:
		host = net.JoinHostPort(host, strconv.Itoa(rd.port))
	case rd.host == "" && rd.scheme == "":
		host = r.Host // same scheme, same authority: keep the port as the client wrote it
	case strings.Contains(host, ":"):
		host = "[" + host + "]" // an IPv6 literal
	}
	path := r.URL.EscapedPath()
	switch {
	case rd.path != "":
		path = rd.path
	case rd.prefix != "":
		path = rd.prefix + strings.TrimPrefix(path, rd.matched)
	}
	loc := scheme + "://" + host + path
	if !rd.stripQuery && r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	w.Header().Set("Location", loc)
	w.WriteHeader(rd.status)
	return nil
}

// direct answers with a fixed response.
type direct struct {
	status  int
	body    string
	headers http.Header
}

func newDirect(d *config.DirectResponse) *direct {
	h := http.Header{}
	for k, v := range d.Headers {
		h.Set(k, v)
	}
	if d.Body != "" && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	h.Set("Content-Length", strconv.Itoa(len(d.Body)))
	return &direct{status: d.Status, body: d.Body, headers: h}
}

func (d *direct) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	for k, v := range d.headers {
		h[k] = v
	}
	w.WriteHeader(d.status)
	if r.Method != http.MethodHead {
		io.WriteString(w, d.body)
	}
	return nil
}

var (
	_ filter.Handler = (*redirect)(nil)
	_ filter.Handler = (*direct)(nil)
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
