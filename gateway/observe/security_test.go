package observe_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/observe"
)

func TestSecurityEvent(t *testing.T) {
	tests := []struct {
		kind, remote, detail string
		wantDetail           string
	}{
		{observe.SecurityRejectedFraming, "198.51.100.4:4000", "Content-Length with Transfer-Encoding", "Content-Length with Transfer-Encoding"},
		{observe.SecurityMalformedRequest, "198.51.100.5:4001", "path climbs above root: /../etc", "path climbs above root: /../etc"},
		// Client-influenced text is JSON-escaped (no forged second line) and cut short.
		{observe.SecurityUnexpectedParameter, "[2001:db8::1]:443", "x\n{\"event\":\"access\"}" + strings.Repeat("é", 400), "x\n{\"event\":\"access\"}" + strings.Repeat("é", 246) + "..."},
	}
	o, logs := newObserver(t)
	for _, tc := range tests {
		o.SecurityEvent(tc.kind, tc.remote, tc.detail)
	}
	o.SecurityEvent(observe.SecurityRejectedFraming, "198.51.100.4:4000", "again")

	lines := logs.lines(t)
	if len(lines) != len(tests)+1 {
		t.Fatalf("%d log lines, want %d (a detail must not add lines)", len(lines), len(tests)+1)
	}
	for i, tc := range tests {
		l := lines[i]
		for k, want := range map[string]any{"event": "security", "level": "WARN", "kind": tc.kind, "remote": tc.remote, "detail": tc.wantDetail, "role": "ingress"} {
			if l[k] != want {
				t.Errorf("line %d: %s = %#v, want %#v", i, k, l[k], want)
			}
		}
	}
	body := scrape(t, o)
	for kind, want := range map[string]float64{observe.SecurityRejectedFraming: 2, observe.SecurityMalformedRequest: 1, observe.SecurityUnexpectedParameter: 1} {
		if got := mustSample(t, body, "portcullis_security_events_total", map[string]string{"kind": kind}); got != want {
			t.Errorf("security_events_total{kind=%s} = %v, want %v", kind, got, want)
		}
	}
}

// A flood of bad requests must not become a flood of log lines, but every event
// is counted and the lines that are written say how many were left out.
func TestSecurityEventLogIsBounded(t *testing.T) {
	o, logs := newObserver(t)
	const n = 1000
	for i := 0; i < n; i++ {
		o.SecurityEvent(observe.SecurityMalformedRequest, "203.0.113.9:1", "bad")
	}
	lines := len(logs.events(t, "security"))
	// At most 100 per second; the loop may straddle a second boundary.
	if lines < 100 || lines > 200 {
		t.Errorf("%d lines logged for %d events, want 100..200", lines, n)
	}
	body := scrape(t, o)
	if got := mustSample(t, body, "portcullis_security_events_total", map[string]string{"kind": "malformed_request"}); got != n {
		t.Errorf("security_events_total = %v, want %d", got, n)
	}
	dropped := mustSample(t, body, "portcullis_log_records_dropped_total", map[string]string{"event": "security"})
	if int(dropped)+lines != n {
		t.Errorf("dropped %v + logged %d != %d events", dropped, lines, n)
	}
}
