package observe

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
)

// accessMode is TelemetrySpec.AccessLog, parsed once.
type accessMode uint8

const (
	accessErrors accessMode = iota // the default
	accessAll
	accessOff
)

func parseAccessMode(s string) (accessMode, error) {
	switch s {
	case "", config.AccessLogErrors:
		return accessErrors, nil
	case config.AccessLogAll:
		return accessAll, nil
	case config.AccessLogOff:
		return accessOff, nil
	}
	return 0, fmt.Errorf("telemetry: accessLog %q is not one of errors, all, off", s)
}

// wants reports whether a request with this status (and a proxy error or not)
// gets an access-log record. Status 0 means nothing was answered, which is an
// error too.
func (m accessMode) wants(status int, proxyErr bool) bool {
	switch m {
	case accessAll:
		return true
	case accessErrors:
		return proxyErr || status >= 400 || status < 100
	}
	return false
}

// AccessRecord is one request as the access log tells it (SM-DR22). The core
// fills it after the response is done; every field is optional.
type AccessRecord struct {
	// Time is when the request was received (Common Log Format's time); zero
	// means now.
	Time time.Time
	// Remote is the client address as the gateway saw it ("ip:port").
	Remote string
	Method string
	Host   string
	// Path is the request target as received, path and query. Secret query and
	// path parameters are masked before it is written.
	Path  string
	Proto string
	// Status is the status sent to the client; 0 when none was sent.
	Status   int
	BytesIn  int64 // request body bytes read
	BytesOut int64 // response body bytes written
	Duration time.Duration
	Route    string
	Cluster  string
	// Upstream is the endpoint address the (last) attempt went to.
	Upstream string
	TraceID  string
	// Identity is the authenticated caller (SPIFFE ID, token subject): CLF's user.
	Identity string
	// Reason is the proxy's error reason ("upstream_reset", "no_healthy_endpoint"),
	// empty when the request went well. A record with a Reason is logged in
	// errors mode whatever its status.
	Reason    string
	UserAgent string
	Referer   string
	// Headers are request headers the core chose to log. Their values are masked
	// (credentials, cookies, configured names) before they are written.
	Headers http.Header
}

// AccessEnabled reports, cheaply, whether a request answered with status would be
// logged, so the core builds an AccessRecord only when it will be used. A proxy
// error is logged in errors mode whatever the status, so the core should test
// "err != nil || AccessEnabled(status)".
func (o *Observer) AccessEnabled(status int) bool {
	return o.tel.Load().mode.wants(status, false)
}

// Access writes one access-log record as a JSON line at level INFO with
// "event":"access", if the access-log mode wants it. The record's time is
// rec.Time (the Common Log Format time). Fields: remote, user, request (the CLF
// request line), status, bytes (response body), bytes_in, method, host, path,
// proto, duration_ms, route, cluster, upstream, trace_id, reason, user_agent,
// referer and headers. rec is not kept.
func (o *Observer) Access(rec *AccessRecord) {
	t := o.tel.Load()
	if !t.mode.wants(rec.Status, rec.Reason != "") {
		return
	}
	ctx := context.Background()
	h := o.access.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	when := rec.Time
	if when.IsZero() {
		when = time.Now()
	}
	target := t.mask.requestTarget(rec.Path)
	r := slog.NewRecord(when, slog.LevelInfo, "access", 0)
	r.AddAttrs(
		slog.String("event", "access"),
		slog.String("remote", rec.Remote),
		slog.String("user", rec.Identity),
		slog.String("request", rec.Method+" "+target+" "+rec.Proto),
		slog.Int("status", rec.Status),
		slog.Int64("bytes", rec.BytesOut),
		slog.Int64("bytes_in", rec.BytesIn),
		slog.String("method", rec.Method),
		slog.String("host", rec.Host),
		slog.String("path", target),
		slog.String("proto", rec.Proto),
		slog.Float64("duration_ms", float64(rec.Duration.Microseconds())/1000),
		slog.String("route", rec.Route),
		slog.String("cluster", rec.Cluster),
		slog.String("upstream", rec.Upstream),
		slog.String("trace_id", rec.TraceID),
		slog.String("reason", rec.Reason),
		slog.String("user_agent", rec.UserAgent),
		slog.String("referer", t.mask.url(rec.Referer)),
	)
	if len(rec.Headers) > 0 {
		r.AddAttrs(slog.Any("headers", t.mask.headers(rec.Headers)))
	}
	// The handler reports write errors; a full disk must not fail the request, and
	// there is nowhere better to report it than the log that failed.
	_ = h.Handle(ctx, r)
}
