package main

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The testdata summaries were written by loadtest/scenarios/proxy.js's handleSummary
// in real k6 v1.8.1 runs on loopback:
//
//	k6-summary-ok.json       200/s for 3s at the backend: clean
//	k6-summary-dropped.json  2000/s for 2s at the backend on a busy machine: k6 dropped iterations
//	k6-summary-refused.json  50/s for 2s at a closed port: every request failed, thresholds crossed
//
// Re-generate them after changing the scenario's summary (see loadtest/README.md).

func TestParseSummaryRealRuns(t *testing.T) {
	tests := []struct {
		file string
		want Result
	}{
		{
			file: "k6-summary-ok.json",
			want: Result{
				Requests: 595, RPS: 195.74005355199816, DurationSec: 3.039745771,
				AvgMs: 1.5497224067226896, P50Ms: 0.46277, P90Ms: 1.2107474000000003,
				P95Ms: 3.750437099999988, P99Ms: 26.449201359997566, MaxMs: 69.439773,
				ErrorRate: 0, Dropped: 0,
			},
		},
		{
			file: "k6-summary-dropped.json",
			want: Result{
				Requests: 3846, RPS: 1920.0938812679317, DurationSec: 2.003027059,
				AvgMs: 7.9652189048362345, P50Ms: 0.858131, P90Ms: 26.990868,
				P95Ms: 47.46156475, P99Ms: 80.11278225000002, MaxMs: 167.196513,
				ErrorRate: 0, Dropped: 158,
			},
		},
		{
			file: "k6-summary-refused.json",
			want: Result{
				Requests: 101, RPS: 50.38448472628792, DurationSec: 2.004585351,
				ErrorRate: 1,
				// Sorted by metric name, whatever order k6 wrote them in.
				FailedThresholds: []string{"checks: rate>0.99", "http_req_failed: rate<0.01"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := parseSummaryFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			// DurationSec is a division; compare it with a tolerance, the rest exactly
			// (they are copied from the JSON unchanged).
			if math.Abs(got.DurationSec-tt.want.DurationSec) > 1e-9 {
				t.Errorf("DurationSec = %v, want %v", got.DurationSec, tt.want.DurationSec)
			}
			got.DurationSec = tt.want.DurationSec
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseSummary:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// A summary without a figure the table prints must be refused, not read as zero.
func TestParseSummaryRefusesMissingFigures(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join("testdata", "k6-summary-ok.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to, wantErr string
	}{
		{"no p99 in summaryTrendStats", `"p(99)"`, `"p(98)"`, `has no "p(99)"`},
		{"no http_reqs", `"http_reqs"`, `"http_reqs_renamed"`, "metric http_reqs missing"},
		{"no http_req_failed", `"http_req_failed"`, `"http_req_failed_renamed"`, "metric http_req_failed missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mangled := strings.ReplaceAll(string(orig), tt.from, tt.to)
			if mangled == string(orig) {
				t.Fatalf("fixture has no %s to replace", tt.from)
			}
			_, err := parseSummary(strings.NewReader(mangled))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseSummaryRejectsNonSummaries(t *testing.T) {
	for name, in := range map[string]string{
		"empty":      "",
		"truncated":  `{"metrics": {"http_reqs": {`,
		"no metrics": `{"state": {"testRunDurationMs": 1000}}`,
		"text":       "http_reqs......: 595 195.7/s\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseSummary(strings.NewReader(in)); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestReadMemStatusOfSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc on this system")
	}
	rss, hwm, err := readMemStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// A Go test binary is resident for at least a megabyte, and the high-water mark
	// can never be below the current RSS.
	if rss < 1024 || hwm < rss {
		t.Fatalf("VmRSS %d KiB, VmHWM %d KiB: implausible", rss, hwm)
	}
}
