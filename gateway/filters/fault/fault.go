// Package fault is the "fault" filter: it delays or aborts a configured percentage of
// requests, to test how clients and the services behind them cope with a slow or
// failing dependency. A header can limit it to requests that ask for it, so that it
// can run on production routes without touching ordinary traffic.
//
// It is not for: rate limiting or load shedding (its choices are random and ignore
// load), or for protecting anything; a client that can send the configured header
// can trigger the faults.
package fault

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
)

// Reasons reported with the *filter.Error values this filter returns.
const (
	ReasonAbort        = "fault_abort"   // an injected abort
	ReasonClientClosed = "client_closed" // the client went away during an injected delay
	ReasonTimeout      = "timeout"       // the request's deadline passed during an injected delay
)

// StatusClientClosed is returned when the client cancels during a delay. Nobody will
// read it; it keeps such requests apart from server errors in logs and metrics (the
// number is nginx's).
const StatusClientClosed = 499

// fault is immutable after Factory: it serves every request of its snapshot.
type fault struct {
	header string // canonical name; "" applies faults to every request

	delay        time.Duration // 0: no delay configured
	delayPercent float64

	abortStatus  int // 0: no abort configured
	abortPercent float64
	grpcStatus   string // "" answers gRPC requests like any other

	// wait holds a request for d; a field so that tests can observe delays without
	// spending wall-clock time on them.
	wait func(ctx context.Context, d time.Duration) error
}

func (f *fault) Handle(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
	if f.header != "" && len(r.Header[f.header]) == 0 {
		return next.ServeHTTP(w, r)
	}
	// Delay and abort are chosen independently, delay first, so that an aborted
	// request can also be a slow one, as with a real overloaded dependency.
	if f.delay > 0 && hit(f.delayPercent) {
		if err := f.wait(r.Context(), f.delay); err != nil {
			return err
		}
	}
	if f.abortStatus != 0 && hit(f.abortPercent) {
		if f.grpcStatus != "" && isGRPC(r) {
			f.writeGRPC(w)
			return nil
		}
		// A new value each time: an *Error is mutable and the core may annotate it.
		return &filter.Error{Status: f.abortStatus, Reason: ReasonAbort}
	}
	return next.ServeHTTP(w, r)
}

// hit reports whether this request is selected. math/rand/v2's top-level functions
// use a per-thread generator, so this takes no lock however many requests run.
func hit(percent float64) bool {
	switch {
	case percent >= 100:
		return true
	case percent <= 0:
		return false
	}
	return rand.Float64()*100 < percent
}

// wait sleeps for d or until the request ends, whichever is first.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return contextError(ctx)
	}
}

// contextError turns the end of a request's context into an error the core can
// answer: a client that left is not a server failure, a passed deadline is a timeout.
func contextError(ctx context.Context) error {
	cause := context.Cause(ctx)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &filter.Error{Status: http.StatusGatewayTimeout, Reason: ReasonTimeout, Err: cause}
	}
	return &filter.Error{Status: StatusClientClosed, Reason: ReasonClientClosed, Err: cause}
}

// isGRPC reports whether the request is a gRPC call (not gRPC-Web, whose status
// travels in the body and which this filter answers like plain HTTP).
func isGRPC(r *http.Request) bool {
	ct := r.Header["Content-Type"]
	if len(ct) == 0 {
		return false
	}
	rest, ok := strings.CutPrefix(ct[0], "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// writeGRPC answers a gRPC call with an error the gRPC way: HTTP 200 and the status
// in a headers-only response ("Trailers-Only" in the gRPC over HTTP/2 spec), which
// net/http sends as one HEADERS frame with END_STREAM when nothing else is written.
// The filter writes it itself because the core's error answer is plain HTTP.
func (f *fault) writeGRPC(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = []string{"application/grpc"}
	h["Grpc-Status"] = []string{f.grpcStatus}
	h["Grpc-Message"] = []string{"fault filter abort"}
	w.WriteHeader(http.StatusOK)
}
