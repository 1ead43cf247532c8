// Package grpcupstream adapts the core's upstream handler (filter.Build.Upstreams)
// to the translate packages' Invoker: the core reports a failed call as a
// *filter.Error with an HTTP status and a reason, and a gRPC-speaking filter needs
// the gRPC code a native gRPC client of the same failure would see. The transcode,
// grpcweb and restbridge filters share it, so all answer one failure with one
// code (restbridge maps the HTTP statuses of answers itself; this is only for
// calls that got no answer).
//
// It has no state and decides nothing about answers.
package grpcupstream

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portcullis/portcullis/gateway/filter"
)

// Invoker sends a gRPC request through the core's upstream handler. Its errors
// are *status.Status errors (status.FromError) whose message names the core's
// reason ("upstream: no_healthy_upstream"), never the cause, which may name
// internal addresses.
type Invoker struct{ Upstream filter.Handler }

// ServeHTTP forwards r and translates a failure into a gRPC status error.
func (i Invoker) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	err := i.Upstream.ServeHTTP(w, r)
	if err == nil {
		return nil
	}
	var fe *filter.Error
	if !errors.As(err, &fe) {
		return status.Error(codes.Unavailable, "upstream call failed")
	}
	return status.Error(Code(fe), "upstream: "+fe.Reason)
}

// Code is the gRPC code of a failure the core reports as fe: what grpc-go's
// client reports for a transport failure of the same kind.
func Code(fe *filter.Error) codes.Code {
	switch {
	case fe.Status == 499:
		return codes.Canceled
	case fe.Status == http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case fe.Status == http.StatusRequestEntityTooLarge, fe.Status == http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case fe.Status >= 500:
		return codes.Unavailable
	}
	return codes.Internal
}
