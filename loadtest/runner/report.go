package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// Report is one runner invocation: the same load at the backend directly and through
// the ingress, and how they compare. It is what -json writes.
type Report struct {
	Rate      int    `json:"rate"`       // requests/s asked of k6
	Duration  string `json:"duration"`   // per run
	BodyBytes int    `json:"body_bytes"` // backend response size
	K6Version string `json:"k6_version,omitempty"`
	Ingress   string `json:"ingress_command"`

	Direct  Result `json:"direct"`
	Through Result `json:"ingress"`

	Compare Comparison `json:"compare"`
	RSS     RSS        `json:"ingress_rss"`
}

// Comparison is the ingress against the direct run of the same go. Absolute figures
// move with whatever else the shared machine is doing; the differences and ratios
// between two runs a few seconds apart move much less, so those are what get quoted.
type Comparison struct {
	AddedP50Ms float64 `json:"added_p50_ms"`
	AddedP99Ms float64 `json:"added_p99_ms"`
	// Ratios are ingress/direct; 0 where the direct figure is 0 (no ratio exists).
	RatioRPS float64 `json:"ratio_rps"`
	RatioP50 float64 `json:"ratio_p50"`
	RatioP95 float64 `json:"ratio_p95"`
	RatioP99 float64 `json:"ratio_p99"`
}

// RSS is the ingress process's resident memory in KiB, from /proc/<pid>/status.
// Zero means it could not be read (for example the process had already exited).
type RSS struct {
	IdleKiB int64 `json:"idle_kib"` // ready, before any load
	PeakKiB int64 `json:"peak_kib"` // highest VmRSS sampled during the ingress run
	// HWMKiB is the kernel's VmHWM at the end of the run: the true peak since the
	// process started, which sampling can miss between two samples.
	HWMKiB           int64   `json:"hwm_kib"`
	SampleIntervalMs float64 `json:"sample_interval_ms"`
}

func compare(direct, ingress Result) Comparison {
	return Comparison{
		AddedP50Ms: ingress.P50Ms - direct.P50Ms,
		AddedP99Ms: ingress.P99Ms - direct.P99Ms,
		RatioRPS:   ratio(ingress.RPS, direct.RPS),
		RatioP50:   ratio(ingress.P50Ms, direct.P50Ms),
		RatioP95:   ratio(ingress.P95Ms, direct.P95Ms),
		RatioP99:   ratio(ingress.P99Ms, direct.P99Ms),
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// rowFormat is the column layout shared by the header and the rows, so they cannot
// drift apart.
const rowFormat = "%-8s  %-23s  %9s  %8s  %8s  %8s  %7s  %7s"

func row(b *strings.Builder, cols ...any) {
	// Trailing blanks (the ratio row's empty columns) only get in the way of
	// copying the table into an issue or a commit message.
	b.WriteString(strings.TrimRight(fmt.Sprintf(rowFormat, cols...), " "))
	b.WriteByte('\n')
}

// writeTable prints the report as a side-by-side table followed by the added
// latency, the ingress's memory and any warnings that make the figures suspect.
func writeTable(w io.Writer, r Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %d req/s asked for %s per target, %d-byte bodies\n\n",
		orDash(r.K6Version), r.Rate, r.Duration, r.BodyBytes)
	row(&b, "target", "url", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "dropped")
	for _, res := range []Result{r.Direct, r.Through} {
		row(&b, res.Target, res.URL,
			fmt.Sprintf("%.1f", res.RPS), ms(res.P50Ms), ms(res.P95Ms), ms(res.P99Ms),
			fmt.Sprintf("%.2f%%", res.ErrorRate*100), fmt.Sprintf("%d", res.Dropped))
	}
	c := r.Compare
	row(&b, "ratio", "ingress/direct",
		x(c.RatioRPS), x(c.RatioP50), x(c.RatioP95), x(c.RatioP99), "", "")
	fmt.Fprintf(&b, "\ningress adds: p50 %+.3f ms, p99 %+.3f ms\n", c.AddedP50Ms, c.AddedP99Ms)
	fmt.Fprintf(&b, "ingress RSS: idle %s, peak during run %s (sampled every %.0f ms; kernel high-water mark %s)\n",
		mib(r.RSS.IdleKiB), mib(r.RSS.PeakKiB), r.RSS.SampleIntervalMs, mib(r.RSS.HWMKiB))
	for _, warn := range warnings(r) {
		fmt.Fprintf(&b, "WARNING: %s\n", warn)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// warnings lists what makes a run's figures not mean what the table says.
func warnings(r Report) []string {
	var out []string
	for _, res := range []Result{r.Direct, r.Through} {
		if res.Dropped > 0 {
			// Dropped iterations are requests the open model should have sent and did
			// not: the latency figures then describe a lighter load than asked for.
			out = append(out, fmt.Sprintf("%s: k6 dropped %d iterations (no free VU); the rate was not held, raise MAX_VUS or lower -rate",
				res.Target, res.Dropped))
		}
		// Achieved rate is count over the whole run, start-up and wind-down
		// included, so a few percent under the asked rate is normal.
		if r.Rate > 0 && res.RPS < 0.9*float64(r.Rate) {
			out = append(out, fmt.Sprintf("%s: achieved %.1f req/s, under 90%% of the %d asked for", res.Target, res.RPS, r.Rate))
		}
		for _, t := range res.FailedThresholds {
			out = append(out, fmt.Sprintf("%s: threshold crossed: %s", res.Target, t))
		}
	}
	return out
}

func ms(v float64) string { return fmt.Sprintf("%.3f", v) }

func x(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func mib(kib int64) string {
	if kib <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

func orDash(s string) string {
	if s == "" {
		return "k6 (version unknown)"
	}
	return s
}

// writeJSON writes the report for tools that track figures across runs.
func writeJSON(path string, r Report) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
