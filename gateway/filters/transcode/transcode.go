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
// It is not for gRPC-Web, nor for calling REST APIs from gRPC clients.
package transcode

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
	"github.com/portcullis/portcullis/translate"
	"github.com/portcullis/portcullis/translate/httprule"
)

type transcodeFilter struct {
	t             *translate.Transcoder
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
	route, vals, res := f.t.Match(r.Method, r.URL.EscapedPath())
	if res != httprule.Found {
		if f.passUnmatched {
			return next.ServeHTTP(w, r)
		}
		code, st := translate.RoutingStatus(res)
		if res == httprule.MethodNotAllowed {
			w.Header().Set("Allow", strings.Join(f.t.Allowed(r.URL.EscapedPath()), ", "))
		}
		f.t.WriteStatus(w, code, st)
		f.note(r, "", "no_binding")
		return nil
	}
	out := f.t.Serve(w, r, route, vals, invoker{f.upstream})
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

// invoker adapts the upstream handler to translate.Invoker: the core's errors
// (statuses with reasons) become the gRPC codes a gRPC client of the same
// failure would see.
type invoker struct{ h filter.Handler }

func (i invoker) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	err := i.h.ServeHTTP(w, r)
	if err == nil {
		return nil
	}
	var fe *filter.Error
	if !errors.As(err, &fe) {
		return status.Error(codes.Unavailable, "upstream call failed")
	}
	return status.Error(codeOf(fe), "upstream: "+fe.Reason)
}

func codeOf(fe *filter.Error) codes.Code {
	switch {
	case fe.Status == 499:
		return codes.Canceled
	case fe.Status == http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case fe.Status == http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case fe.Status == http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case fe.Status >= 500:
		return codes.Unavailable
	}
	return codes.Internal
}
