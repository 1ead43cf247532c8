// Package restbridge is the "restbridge" filter, the egress direction of the
// transcoder: gRPC clients inside the mesh call methods that an external
// REST/JSON API serves. A gRPC request (application/grpc, over h2c or HTTP/2)
// for a bridged method is turned into the HTTP request its google.api.http rule
// describes (path template filled from fields, body per the rule, other fields
// as query parameters), sent to the filter's cluster through the core's upstream
// handler, and the JSON answer becomes the response message; an HTTP error
// status becomes a gRPC status (translate.CodeFromREST). The work is package
// translate's (Bridge); this package is its config and its place in a chain.
//
// Requests that are not gRPC go on down the chain untouched, and so, with
// unmatched: next, do gRPC requests for methods that are not bridged.
//
// It is not for exposing gRPC services to REST clients (the transcode filter),
// nor for streaming methods.
package restbridge

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/internal/grpcupstream"
	"github.com/portcullis/portcullis/gateway/proxy"
	"github.com/portcullis/portcullis/translate"
)

type bridgeFilter struct {
	bridge        *translate.Bridge
	bridged       map[string]bool
	upstream      grpcupstream.Invoker
	cluster       string
	passUnmatched bool
	log           *slog.Logger
}

var _ filter.Filter = (*bridgeFilter)(nil)

func (f *bridgeFilter) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	if !isGRPC(r) || (f.passUnmatched && !f.bridged[r.URL.Path]) {
		return next.ServeHTTP(w, r)
	}
	out := f.bridge.Serve(w, r, f.upstream)
	if info := proxy.InfoFrom(r.Context()); info != nil {
		info.Cluster = f.cluster
		reason := out.Reason
		if reason == "" && out.Code != 0 {
			reason = "grpc_" + strings.ToLower(out.Code.String())
		}
		if reason != "" && info.Reason == "" {
			info.Reason = reason
		}
	}
	return nil
}

func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest == "+proto" || strings.HasPrefix(rest, ";"))
}
