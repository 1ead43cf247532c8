package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
)

// Result is what one k6 run at one target measured. Latencies are in milliseconds,
// as k6 reports them.
type Result struct {
	Target string `json:"target"` // "direct" or "ingress"
	URL    string `json:"url"`

	Requests    int64   `json:"requests"`
	RPS         float64 `json:"requests_per_second"` // achieved, not asked for
	DurationSec float64 `json:"duration_seconds"`    // k6's whole run, wind-down included

	AvgMs float64 `json:"avg_ms"`
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P95Ms float64 `json:"p95_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`

	ErrorRate float64 `json:"error_rate"` // http_req_failed: 0..1
	Dropped   int64   `json:"dropped_iterations"`

	// FailedThresholds names each threshold k6 judged crossed, as "metric: expr".
	FailedThresholds []string `json:"failed_thresholds,omitempty"`
}

// k6Summary is the part of k6's handleSummary data object the runner reads. The
// object is k6's own format; anything else in it is ignored, so a newer k6 that adds
// fields still parses.
type k6Summary struct {
	State struct {
		TestRunDurationMs float64 `json:"testRunDurationMs"`
	} `json:"state"`
	Metrics map[string]k6Metric `json:"metrics"`
}

type k6Metric struct {
	Type       string             `json:"type"`
	Values     map[string]float64 `json:"values"`
	Thresholds map[string]struct {
		OK bool `json:"ok"`
	} `json:"thresholds"`
}

// parseSummaryFile reads a summary written by the scenario's handleSummary.
func parseSummaryFile(path string) (Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	res, err := parseSummary(f)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", path, err)
	}
	return res, nil
}

// parseSummary turns k6's summary object into a Result. A figure the table needs and
// the summary lacks is an error, not a zero: a zero p99 would read as a fast proxy.
func parseSummary(r io.Reader) (Result, error) {
	var s k6Summary
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return Result{}, fmt.Errorf("decoding k6 summary: %w", err)
	}
	if len(s.Metrics) == 0 {
		return Result{}, fmt.Errorf("k6 summary has no metrics")
	}

	var res Result
	var errs []error
	need := func(metric, stat string) float64 {
		m, ok := s.Metrics[metric]
		if !ok {
			errs = append(errs, fmt.Errorf("metric %s missing", metric))
			return 0
		}
		v, ok := m.Values[stat]
		if !ok {
			errs = append(errs, fmt.Errorf("metric %s has no %q (is it in summaryTrendStats?)", metric, stat))
		}
		return v
	}

	res.Requests = int64(need("http_reqs", "count"))
	res.RPS = need("http_reqs", "rate")
	res.AvgMs = need("http_req_duration", "avg")
	res.P50Ms = need("http_req_duration", "med")
	res.P90Ms = need("http_req_duration", "p(90)")
	res.P95Ms = need("http_req_duration", "p(95)")
	res.P99Ms = need("http_req_duration", "p(99)")
	res.MaxMs = need("http_req_duration", "max")
	res.ErrorRate = need("http_req_failed", "rate")
	if len(errs) > 0 {
		return Result{}, errs[0]
	}

	// k6 only creates dropped_iterations once one is dropped: absent means none.
	if m, ok := s.Metrics["dropped_iterations"]; ok {
		res.Dropped = int64(m.Values["count"])
	}
	res.DurationSec = s.State.TestRunDurationMs / 1000

	for name, m := range s.Metrics {
		for expr, t := range m.Thresholds {
			if !t.OK {
				res.FailedThresholds = append(res.FailedThresholds, name+": "+expr)
			}
		}
	}
	// Map order is random; a stable order keeps reports and tests comparable.
	sort.Strings(res.FailedThresholds)
	return res, nil
}
