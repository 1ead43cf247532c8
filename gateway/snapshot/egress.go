package snapshot

import (
	"net/http"
	"net/url"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/egress"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/observe"
	"github.com/portcullis/portcullis/gateway/proxy"
	"go.opentelemetry.io/otel/trace"
)

// An egress listener (spec.egress) serves every request with the egress
// handler of its namespace instead of a route table (gateway/egress).

// newEgress builds the egress handler of listener o, with the filters of
// spec.egress.filters, and hands it to the snapshot's closers. The filters are
// built like a Route rule's (buildFilters): their Route is
// "namespace/listener#egress", their Upstreams are the clusters of the
// listener's namespace, bounded by the listener's requestTimeout.
func (s *Snapshot) newEgress(h *listenerHandler, o *config.Object[config.ListenerSpec]) error {
	opts := []egress.Option{egress.WithLogger(s.deps.Logger)}
	if s.deps.Observer != nil {
		opts = append(opts, egress.WithObserver(s.deps.Observer, s.deps.Role))
	}
	if e := o.Spec.Egress; e != nil && len(e.Filters) > 0 {
		ns := o.Meta.Namespace
		filters, err := s.buildFilters(o.Source, o.Ref(config.KindListener), "spec.egress.filters", e.Filters,
			ns+"/"+o.Meta.Name+"#egress", upstreamLookup{s, ns, e.RequestTimeout})
		if err != nil {
			return err
		}
		opts = append(opts, egress.WithFilters(filters...))
	}
	eh, err := egress.New(s.Set, o, opts...)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, eh)
	h.egress = eh
	if h.obs != nil {
		h.egressStats = s.stats.Route(h.name, "egress", "")
	}
	return nil
}

// serveEgress serves one request of an egress listener. The path of an HTTP
// request is normalised first, as on any listener, so that the policy's path
// prefixes judge the path that is sent.
func (h *listenerHandler) serveEgress(x *exchange, r *http.Request) {
	r2 := r
	if r.Method != http.MethodConnect {
		escaped := r.URL.EscapedPath()
		if escaped == "" {
			escaped = "/" // "GET http://api.example.com HTTP/1.1"
		}
		path, reason, ok := h.paths.Normalize(escaped)
		if !ok {
			h.security(observe.SecurityMalformedRequest, r, reason)
			h.finish(x, r, &filter.Error{Status: http.StatusBadRequest, Reason: "bad_path"}, h.egressStats)
			return
		}
		if path != r.URL.EscapedPath() {
			u := *r.URL
			u.Path, u.RawPath = path, path
			if p, err := url.PathUnescape(path); err == nil {
				u.Path = p
			}
			r2 = r.Clone(r.Context())
			r2.URL = &u
		}
	}
	ctx := proxy.WithInfo(r.Context(), &x.info)
	var span trace.Span
	if h.obs != nil {
		ctx, span = h.obs.StartSpanFrom(ctx, r, "egress")
	}
	r2 = r2.WithContext(ctx)
	err := h.egress.ServeHTTP(&x.rec, r2)
	abort := h.finish(x, r2, err, h.egressStats)
	if span != nil {
		observe.EndSpan(span, x.rec.status, x.info.Reason)
	}
	if abort {
		panic(http.ErrAbortHandler)
	}
}
