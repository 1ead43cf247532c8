// Package transcode is the "transcode" filter: it exposes gRPC services as
// REST/JSON at the ingress (SM-DR3). A request that matches a google.api.http
// binding of the exposed services is turned into a gRPC call to the filter's
// cluster, sent through the core's upstream handler (so load balancing, health
// checks, outlier ejection and circuit breakers apply), and the answer is written
// back as JSON. The work itself is package translate's; this package is its
// config, its loading, and its place in a route's chain.
//
// Native gRPC requests (content-type application/grpc) pass through to the rest
// of the chain untouched, so one route can serve both.
//
// Descriptors come from .proto files, a descriptor set, or the cluster's server
// reflection service (fetched in the background and refreshed; see
// reflection.go for the policy on changes).
//
// It is not for gRPC-Web (the grpcweb filter), nor for calling REST APIs from
// gRPC clients (restbridge).
package transcode

import (
	"log/slog"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/internal/grpcupstream"
	"github.com/portcullis/portcullis/gateway/proxy"
	"github.com/portcullis/portcullis/translate"
	"github.com/portcullis/portcullis/translate/httprule"
)

type transcodeFilter struct {
	static        *translate.Transcoder // from files; nil with reflection
	live          *liveSource           // from reflection; nil with files
	upstream      filter.Handler
	cluster       string
	route         string
	passUnmatched bool
	log           *slog.Logger
}

var _ filter.Filter = (*transcodeFilter)(nil)

func (f *transcodeFilter) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	if isGRPC(r) {
		return next.ServeHTTP(w, r)
	}
	t := f.static
	if t == nil {
		if t = f.live.current.Load(); t == nil {
			f.live.writePending(w)
			f.note(r, f.cluster, "descriptors_pending")
			return nil
		}
	}
	route, vals, res := t.Match(r.Method, r.URL.EscapedPath())
	if res != httprule.Found {
		if f.passUnmatched {
			return next.ServeHTTP(w, r)
		}
		code, st := translate.RoutingStatus(res)
		if res == httprule.MethodNotAllowed {
			w.Header().Set("Allow", strings.Join(t.Allowed(r.URL.EscapedPath()), ", "))
		}
		t.WriteStatus(w, code, st)
		f.note(r, "", "no_binding")
		return nil
	}
	out := t.Serve(w, r, route, vals, grpcupstream.Invoker{Upstream: f.upstream})
	reason := out.Reason
	if reason == "" && out.Code != codes.OK {
		reason = "grpc_" + strings.ToLower(out.Code.String())
	}
	f.note(r, f.cluster, reason)
	return nil
}

// note records the cluster and the reason of an irregular outcome in the
// request's record, for the access log and metrics.
func (f *transcodeFilter) note(r *http.Request, cluster, reason string) {
	info := proxy.InfoFrom(r.Context())
	if info == nil {
		return
	}
	if cluster != "" {
		info.Cluster = cluster
	}
	if reason != "" && info.Reason == "" {
		info.Reason = reason
	}
}

func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc") && (len(ct) == len("application/grpc") || ct[len("application/grpc")] == '+' || ct[len("application/grpc")] == ';')
}

// Close stops the reflection refresher, if any. The core calls it when the
// snapshot is retired.
func (f *transcodeFilter) Close() error {
	if f.live != nil {
		return f.live.Close()
	}
	return nil
}

// ReflectionStatus reports the state of descriptors fetched by server
// reflection; false for descriptors from files.
func (f *transcodeFilter) ReflectionStatus() (ReflectionStatus, bool) {
	if f.live == nil {
		return ReflectionStatus{}, false
	}
	return f.live.Status(), true
}
