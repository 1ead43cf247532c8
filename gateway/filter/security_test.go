package filter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
)

// recorded is an event sink that keeps what it is given.
type recorded struct{ events [][3]string }

func (r *recorded) SecurityEvent(kind, remote, detail string) {
	r.events = append(r.events, [3]string{kind, remote, detail})
}

// jsonLogger returns a logger writing JSON lines to buf.
func jsonLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, nil))
}

var testEvent = filter.SecurityEvent{
	Filter: "jwt", Kind: "auth_failure", Reason: "jwt_expired",
	Remote: "192.0.2.1", Detail: "jwt: jwt_expired route=default/r#0",
}

func TestReportSecurityEventToSink(t *testing.T) {
	var buf bytes.Buffer
	sink := &recorded{}
	filter.ReportSecurityEvent(context.Background(), sink, jsonLogger(&buf), testEvent)
	want := [3]string{"auth_failure", "192.0.2.1", "jwt: jwt_expired route=default/r#0"}
	if len(sink.events) != 1 || sink.events[0] != want {
		t.Errorf("sink got %q, want [%q]", sink.events, want)
	}
	if buf.Len() != 0 {
		t.Errorf("logged %q as well; the sink alone decides what is logged", buf.String())
	}
}

func TestReportSecurityEventToLogger(t *testing.T) {
	var buf bytes.Buffer
	filter.ReportSecurityEvent(context.Background(), nil, jsonLogger(&buf), testEvent)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log output %q: %v", buf.String(), err)
	}
	for k, want := range map[string]string{
		"level": "WARN", "msg": "jwt: request refused", "event": "security", "kind": "auth_failure",
		"reason": "jwt_expired", "remote": "192.0.2.1", "detail": "jwt: jwt_expired route=default/r#0",
	} {
		if line[k] != want {
			t.Errorf("log line %s = %v, want %q (line %s)", k, line[k], want, buf.String())
		}
	}
}

func TestLoggerFor(t *testing.T) {
	var buf bytes.Buffer
	b := filter.Build{Route: "default/r#0", Logger: jsonLogger(&buf)}
	b.LoggerFor("jwt").Info("hello")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log output %q: %v", buf.String(), err)
	}
	if line["filter"] != "jwt" || line["route"] != "default/r#0" || line["msg"] != "hello" {
		t.Errorf("log line %s: want filter=jwt route=default/r#0 msg=hello", buf.String())
	}

	quiet := filter.Build{Route: "default/r#0"}.LoggerFor("jwt")
	if quiet == nil || quiet.Enabled(context.Background(), slog.LevelError) {
		t.Errorf("without Build.Logger: %v, want a logger that discards everything", quiet)
	}
}
