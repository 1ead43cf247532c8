package observe

import (
	"context"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"
)

// Security event kinds (SM-DR21). Pass one of these, or another constant word:
// the kind is a metric label, so it must never come from the request.
const (
	SecurityMalformedRequest    = "malformed_request"    // unparsable request line, header or path
	SecurityRejectedFraming     = "rejected_framing"     // ambiguous body framing (CL+TE, bad chunking): smuggling attempts
	SecurityUnexpectedParameter = "unexpected_parameter" // a header, query parameter or method the route does not accept
	SecurityAuthFailure         = "auth_failure"         // missing, invalid or expired credentials; failed mTLS
	SecurityPolicyDenied        = "policy_denied"        // an authorization or egress policy said no
	SecurityLimitExceeded       = "limit_exceeded"       // header, body or connection limits
)

const (
	// securityLinesPerSecond bounds the security log. Its events are triggered by
	// clients, so a flood of bad requests would otherwise become a flood of log
	// writes (disk, shipping costs) on top of the attack. The counter still counts
	// every event, and the next line written says how many were left out.
	securityLinesPerSecond = 100
	// maxDetail bounds the client-influenced detail text of one line.
	maxDetail = 512
)

// LocalReply counts a request the proxy answered itself with an error, by its
// reason (a filter's or the core's); see portcullis_local_replies_total. Reasons
// are short fixed words chosen by code, never client input, so the series stay few.
func (o *Observer) LocalReply(listener, route, reason string) {
	o.m.localReplies.WithLabelValues(listener, route, reason).Inc()
}

// SecurityEvent records a request refused for a security reason: a WARN line with
// "event":"security", the kind, the client address and a short detail, and
// portcullis_security_events_total{kind}. detail is written as given (JSON-escaped
// and cut to 512 bytes): it must not carry credentials.
func (o *Observer) SecurityEvent(kind, remoteAddr, detail string) {
	o.m.securityEvents.WithLabelValues(kind).Inc()
	ok, suppressed := o.secLimit.allow(time.Now())
	if !ok {
		o.m.logsDropped.WithLabelValues("security").Inc()
		return
	}
	attrs := []slog.Attr{
		slog.String("event", "security"),
		slog.String("kind", kind),
		slog.String("remote", remoteAddr),
		slog.String("detail", truncate(detail, maxDetail)),
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	o.log.LogAttrs(context.Background(), slog.LevelWarn, "security event", attrs...)
}

// logLimiter lets a fixed number of lines through per wall-clock second. A mutex
// is fine: it is only taken when a line is about to be written, which takes the
// handler's own lock anyway.
type logLimiter struct {
	mu      sync.Mutex
	sec     int64
	n       int
	dropped int
}

// allow reports whether a line may be written now, and how many were dropped
// since the last one written.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	s := now.Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	if s != l.sec {
		l.sec, l.n = s, 0
	}
	if l.n >= securityLinesPerSecond {
		l.dropped++
		return false, 0
	}
	l.n++
	d := l.dropped
	l.dropped = 0
	return true, d
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
