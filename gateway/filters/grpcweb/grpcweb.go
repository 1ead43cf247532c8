// Package grpcweb is the "grpcweb" filter: browsers call the route's gRPC
// services with gRPC-Web (binary or base64 text, over HTTP/1.1 or HTTP/2), and
// the filter calls the filter's cluster with gRPC over HTTP/2 through the core's
// upstream handler (load balancing, health checks, outlier ejection and circuit
// breakers apply), re-framing the answer with its trailers in the body. The
// protocol work is package translate/grpcweb's; this package is its config and
// its place in a route's chain.
//
// Requests that are not gRPC-Web (native gRPC, REST, CORS preflights) go on down
// the chain untouched, so one route can serve gRPC, gRPC-Web and, with the
// transcode filter, REST. CORS is the cors filter's: put it before this one
// (docs/translate.md lists the headers to allow and expose).
//
// It is not for REST/JSON clients (the transcode filter) nor for calling REST
// APIs from gRPC clients (restbridge).
package grpcweb

import (
	"log/slog"
	"net/http"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/internal/grpcupstream"
	"github.com/portcullis/portcullis/gateway/proxy"
	"github.com/portcullis/portcullis/translate/grpcweb"
)

type webFilter struct {
	proxy    *grpcweb.Proxy
	upstream grpcupstream.Invoker
	cluster  string
	log      *slog.Logger
}

var _ filter.Filter = (*webFilter)(nil)

func (f *webFilter) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	if !grpcweb.IsGRPCWeb(r) {
		return next.ServeHTTP(w, r)
	}
	out := f.proxy.Serve(w, r, f.upstream)
	if info := proxy.InfoFrom(r.Context()); info != nil {
		info.Cluster = f.cluster
		if out.Reason != "" && info.Reason == "" {
			info.Reason = out.Reason
		}
	}
	return nil
}
