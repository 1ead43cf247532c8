package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway"
	"github.com/portcullis/portcullis/internal/testutil"
)

// lockedBuffer is the gateway's JSON log, read by the test while the gateway writes.
type lockedBuffer struct {
	testutil.SyncBuffer
}

// records decodes the access-log records written so far.
func (l *lockedBuffer) records(t *testing.T) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if m["event"] == "access" {
			out = append(out, m)
		}
	}
	return out
}

// TestAccessLogHeadersOnFailuresOnly: in "all" mode every request has a record;
// the request headers (masked) are in the records of failed requests only.
func TestAccessLogHeadersOnFailuresOnly(t *testing.T) {
	a := echo(t, "a")
	cfg := listenerYAML + clusterYAML("a", a.Listener.Addr().String()) + `---
` + header + `kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - match: {path: {prefix: /ok}}
      forward: {backends: [{cluster: a}]}
---
` + header + `kind: Telemetry
metadata: {name: t}
spec: {accessLog: all}
`
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	g, err := gateway.New(gateway.Options{Role: gateway.RoleIngress, ConfigPaths: []string{path}, PollInterval: -1,
		ShutdownGrace: time.Second, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown()
	base := "http://" + g.ListenerAddr("default/pub")
	for _, p := range []string{"/ok", "/missing"} {
		req := mustReq(t, "GET", base+p, nil)
		req.Header.Set("Authorization", "Bearer secret-token-value")
		req.Header.Set("X-Request-Id", "r-1")
		get(t, nil, req)
	}
	// A record is written when the request finishes, which may be just after the
	// client has its answer.
	recs := logs.records(t)
	for deadline := time.Now().Add(5 * time.Second); len(recs) < 2 && time.Now().Before(deadline); recs = logs.records(t) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(recs) != 2 {
		t.Fatalf("%d access records, want 2", len(recs))
	}
	byPath := map[string]map[string]any{}
	for _, r := range recs {
		byPath[r["path"].(string)] = r
	}
	if h, ok := byPath["/ok"]["headers"]; ok {
		t.Errorf("a 200's record has headers: %v", h)
	}
	h, _ := byPath["/missing"]["headers"].(map[string]any)
	if h["X-Request-Id"] != "r-1" || h["Authorization"] != "Bearer ***" {
		t.Errorf("a 404's record: headers %v, want them, masked", byPath["/missing"]["headers"])
	}
	if bytes.Contains(logs.Bytes(), []byte("secret-token-value")) {
		t.Error("the bearer token reached the log")
	}
}
