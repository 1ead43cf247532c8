package filter

import (
	"context"
	"log/slog"
)

// SecurityEvent is one request a filter refused for a security reason: a missing
// or bad credential, a caller without the rights a rule asks for.
type SecurityEvent struct {
	// Filter is the type of the filter that refused ("jwt"); without an event
	// sink, the log line's message is Filter + ": request refused".
	Filter string
	// Kind groups events for counting ("auth_failure", "authz_denied").
	Kind string
	// Reason is why, as in the Reason of the *Error the filter returns.
	Reason string
	// Remote is the client's address.
	Remote string
	// Detail is what the filter chose to tell an operator: the reason, the route
	// and what the caller claimed to be, cut short. Never a credential.
	Detail string
}

// ReportSecurityEvent reports ev through events, the core's sink (Build.Events),
// when there is one: the core counts events and rate-limits their log lines, since
// clients choose how many to cause. Without one, ev becomes a warning on log with
// the attributes event=security, kind, reason, remote and detail.
func ReportSecurityEvent(ctx context.Context, events Events, log *slog.Logger, ev SecurityEvent) {
	if events != nil {
		events.SecurityEvent(ev.Kind, ev.Remote, ev.Detail)
		return
	}
	log.LogAttrs(ctx, slog.LevelWarn, ev.Filter+": request refused",
		slog.String("event", "security"), slog.String("kind", ev.Kind),
		slog.String("reason", ev.Reason), slog.String("remote", ev.Remote), slog.String("detail", ev.Detail))
}
