package observe_test

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/gateway/observe"
	"github.com/portcullis/portcullis/internal/testutil"
)

// logBuffer collects log output; the exporter may log from its own goroutine.
type logBuffer struct {
	testutil.SyncBuffer
}

// lines decodes every JSON line written so far.
func (l *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// events returns the decoded lines whose "event" field is ev.
func (l *logBuffer) events(t *testing.T, ev string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range l.lines(t) {
		if m["event"] == ev {
			out = append(out, m)
		}
	}
	return out
}

// newObserver returns an Observer with role "ingress" logging JSON (all levels)
// into the returned buffer, on its own registry.
func newObserver(t *testing.T) (*observe.Observer, *logBuffer) {
	t.Helper()
	buf := &logBuffer{}
	o := observe.New(observe.Options{
		Role:     "ingress",
		Node:     "node-1",
		Logger:   slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: prometheus.NewRegistry(),
	})
	return o, buf
}

// scrape fetches /metrics through the Observer's handler, as Prometheus would.
func scrape(t *testing.T, o *observe.Observer) string {
	t.Helper()
	rec := httptest.NewRecorder()
	o.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// sample returns the value of the one series of metric name whose labels include
// all of want, and whether there is one. Two matching series fail the test: the
// caller's labels were not specific enough to mean anything.
func sample(t *testing.T, body, name string, want map[string]string) (float64, bool) {
	t.Helper()
	var found []string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var labels string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.Index(rest, "} ")
			labels, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric with this prefix
		}
		ok := true
		for k, v := range want {
			if !strings.Contains(","+labels+",", ","+k+"="+strconv.Quote(v)+",") {
				ok = false
				break
			}
		}
		if ok {
			found = append(found, strings.TrimSpace(rest))
		}
	}
	switch len(found) {
	case 0:
		return 0, false
	case 1:
	default:
		t.Fatalf("%s%v matches %d series", name, want, len(found))
	}
	v, err := strconv.ParseFloat(strings.Fields(found[0])[0], 64)
	if err != nil {
		t.Fatalf("%s%v: value %q: %v", name, want, found[0], err)
	}
	return v, true
}

// mustSample is sample for a series that must exist.
func mustSample(t *testing.T, body, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := sample(t, body, name, want)
	if !ok {
		t.Fatalf("no series %s%v in:\n%s", name, want, grep(body, name))
	}
	return v
}

// grep returns the lines of body that mention name, for failure messages.
func grep(body, name string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, name) {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
