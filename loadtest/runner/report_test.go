package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sampleReport() Report {
	direct := Result{Target: "direct", URL: "http://127.0.0.1:9000/",
		Requests: 2500, RPS: 498.6, P50Ms: 0.2, P95Ms: 0.5, P99Ms: 1.25}
	ingress := Result{Target: "ingress", URL: "http://127.0.0.1:8080/",
		Requests: 2500, RPS: 497.2, P50Ms: 0.35, P95Ms: 0.9, P99Ms: 2.5, ErrorRate: 0.0004}
	return Report{
		Rate: 500, Duration: "5s", BodyBytes: 1024,
		K6Version: "k6 v1.8.1 (go1.26.8, linux/amd64)",
		Direct:    direct, Through: ingress,
		Compare: compare(direct, ingress),
		RSS:     RSS{IdleKiB: 7270, PeakKiB: 12595, HWMKiB: 12800, SampleIntervalMs: 100},
	}
}

func TestCompare(t *testing.T) {
	c := sampleReport().Compare
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("AddedP50Ms", c.AddedP50Ms, 0.15)
	near("AddedP99Ms", c.AddedP99Ms, 1.25)
	near("RatioP50", c.RatioP50, 1.75)
	near("RatioP95", c.RatioP95, 1.8)
	near("RatioP99", c.RatioP99, 2)
	near("RatioRPS", c.RatioRPS, 497.2/498.6)

	// A direct figure of zero (every request failed) has no ratio.
	if got := compare(Result{}, Result{P50Ms: 1}).RatioP50; got != 0 {
		t.Errorf("ratio over zero = %v, want 0", got)
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	if err := writeTable(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	want := `k6 v1.8.1 (go1.26.8, linux/amd64), 500 req/s asked for 5s per target, 1024-byte bodies

target    url                          req/s    p50 ms    p95 ms    p99 ms   errors  dropped
direct    http://127.0.0.1:9000/       498.6     0.200     0.500     1.250    0.00%        0
ingress   http://127.0.0.1:8080/       497.2     0.350     0.900     2.500    0.04%        0
ratio     ingress/direct                1.00      1.75      1.80      2.00

ingress adds: p50 +0.150 ms, p99 +1.250 ms
ingress RSS: idle 7.1 MiB, peak during run 12.3 MiB (sampled every 100 ms; kernel high-water mark 12.5 MiB)
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteTableWarnings(t *testing.T) {
	r := sampleReport()
	r.Through.Dropped = 42
	r.Direct.RPS = 400 // under 90% of 500
	r.Through.FailedThresholds = []string{"http_req_failed: rate<0.01"}
	r.RSS = RSS{SampleIntervalMs: 100} // ingress memory could not be read
	r.K6Version = ""

	var b strings.Builder
	if err := writeTable(&b, r); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"k6 (version unknown), 500 req/s",
		"ingress RSS: idle n/a, peak during run n/a",
		"WARNING: direct: achieved 400.0 req/s, under 90% of the 500 asked for\n",
		"WARNING: ingress: k6 dropped 42 iterations",
		"WARNING: ingress: threshold crossed: http_req_failed: rate<0.01\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	// A clean run prints no warning at all.
	b.Reset()
	if err := writeTable(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "WARNING") {
		t.Errorf("clean run warns:\n%s", b.String())
	}
}

// Every row of the table has the same width, so columns line up whatever the values.
func TestWriteTableColumnsAlign(t *testing.T) {
	r := sampleReport()
	r.Through.RPS = 12345.6
	r.Through.P99Ms = 1234.5
	r.Through.Dropped = 1234567
	r.Through.ErrorRate = 1
	var b strings.Builder
	if err := writeTable(&b, r); err != nil {
		t.Fatal(err)
	}
	// Header, direct and ingress; the ratio row stops after its last figure.
	lines := strings.Split(b.String(), "\n")[2:5]
	for _, l := range lines[1:] {
		if len(l) != len(lines[0]) {
			t.Errorf("row %q is %d wide, header %d", l, len(l), len(lines[0]))
		}
	}
}

func TestWriteJSONRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.json")
	want := sampleReport()
	if err := writeJSON(path, want); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The field names are the interface for whatever tracks figures across runs.
	for _, key := range []string{`"p99_ms"`, `"added_p99_ms"`, `"ratio_p99"`, `"dropped_iterations"`, `"peak_kib"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	var got Report
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Through.P99Ms != want.Through.P99Ms || got.RSS.PeakKiB != want.RSS.PeakKiB {
		t.Errorf("round trip changed figures: %+v", got)
	}
}
