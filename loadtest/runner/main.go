// Command runner is Portcullis's own load-test harness. It builds and starts the
// load-test backend and the ingress, drives the same open-model k6 load (a fixed
// arrival rate, loadtest/scenarios/proxy.js) first at the backend directly and then
// through the ingress, and prints the two side by side with the ingress's added
// latency, the ratios ingress/direct and the ingress's memory.
//
//	go run ./loadtest/runner -rate 2000 -duration 20s
//
// It is a measuring tool run by hand, not a test: the repository's `go test ./...`
// only checks its parsing and formatting. Everything it starts listens on loopback
// and is stopped when it exits (unless -keep), also on Ctrl-C; every wait is bounded.
// See loadtest/README.md for what the figures mean.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The addresses are those of deploy/examples/reverse-proxy.yaml, which the ingress
// is started with; changing one means changing both.
const (
	backendAddr = "127.0.0.1:9000"
	ingressAddr = "127.0.0.1:8080"
	adminAddr   = "127.0.0.1:9901"
	configPath  = "deploy/examples/reverse-proxy.yaml"
	scenario    = "loadtest/scenarios/proxy.js"

	startTimeout   = 15 * time.Second
	stopGrace      = 5 * time.Second
	rssInterval    = 100 * time.Millisecond
	pauseBetween   = time.Second // lets the first run's connections close before the second
	k6ExtraTimeout = 2 * time.Minute
)

type options struct {
	rate       int
	duration   time.Duration
	size       int
	k6         string
	keep       bool
	jsonPath   string
	ingressCmd string
}

func main() {
	var o options
	flag.IntVar(&o.rate, "rate", 2000, "requests per second k6 starts (constant arrival rate)")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long each of the two runs lasts")
	flag.IntVar(&o.size, "size", 1024, "backend response body size in bytes")
	flag.StringVar(&o.k6, "k6", "", "path to k6 (default: k6 from PATH, else $(go env GOPATH)/bin/k6)")
	flag.BoolVar(&o.keep, "keep", false, "leave the backend and ingress running after the runner exits")
	flag.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.ingressCmd, "ingress-cmd", "",
		"run this command (split on spaces, no shell) as the ingress instead of building ./cmd/ingress;\n"+
			"it must listen on "+ingressAddr+" and forward to "+backendAddr)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "runner: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if o.rate <= 0 || o.duration <= 0 || o.size < 0 {
		fmt.Fprintln(os.Stderr, "runner: -rate and -duration must be positive, -size not negative")
		os.Exit(2)
	}

	// Ctrl-C or SIGTERM cancels ctx; run's deferred cleanup then stops the children.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, o)
	stop()
	os.Exit(code)
}

// run returns the exit code: 0 when both runs completed within their thresholds, 1
// when a threshold was crossed (the table is still printed), 2 for anything else.
func run(ctx context.Context, o options) (code int) {
	fail := func(err error) int {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "runner: interrupted; stopping what was started")
		} else {
			fmt.Fprintln(os.Stderr, "runner:", err)
		}
		return 2
	}

	root, err := moduleRoot()
	if err != nil {
		return fail(err)
	}
	k6, err := findK6(o.k6)
	if err != nil {
		return fail(err)
	}
	k6Version := k6VersionOf(ctx, k6)
	for _, addr := range []string{backendAddr, ingressAddr} {
		if err := ensureFree(addr); err != nil {
			return fail(err)
		}
	}

	tmp, err := os.MkdirTemp("", "portcullis-loadtest-")
	if err != nil {
		return fail(err)
	}
	var procs []*proc
	defer func() {
		if o.keep {
			for _, p := range procs {
				if !p.exited() {
					fmt.Fprintf(os.Stderr, "runner: left %s running: pid %d, log %s (stop with: kill -- -%d)\n",
						p.name, p.pid(), p.logPath, p.pid())
				}
			}
			return
		}
		// Stop in reverse order of start: the ingress before the backend it forwards to.
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(stopGrace)
		}
		os.RemoveAll(tmp)
	}()

	fmt.Fprintln(os.Stderr, "runner: building the backend")
	backendBin := filepath.Join(tmp, "backend")
	if err := goBuild(ctx, root, backendBin, "./loadtest/backend"); err != nil {
		return fail(err)
	}
	ingressArgv := strings.Fields(o.ingressCmd)
	if len(ingressArgv) == 0 {
		if _, err := os.Stat(filepath.Join(root, "cmd", "ingress")); err != nil {
			return fail(fmt.Errorf("./cmd/ingress not found (%v); pass -ingress-cmd to measure another proxy", err))
		}
		fmt.Fprintln(os.Stderr, "runner: building the ingress")
		ingressBin := filepath.Join(tmp, "ingress")
		if err := goBuild(ctx, root, ingressBin, "./cmd/ingress"); err != nil {
			return fail(err)
		}
		ingressArgv = []string{ingressBin, "-config", configPath, "-admin", adminAddr}
	}

	backend, err := startProc("backend",
		[]string{backendBin, "-addr", backendAddr, "-size", strconv.Itoa(o.size)},
		root, filepath.Join(tmp, "backend.log"))
	if err != nil {
		return fail(err)
	}
	procs = append(procs, backend)
	if err := waitListening(ctx, backend, backendAddr, startTimeout); err != nil {
		return fail(err)
	}
	ingress, err := startProc("ingress", ingressArgv, root, filepath.Join(tmp, "ingress.log"))
	if err != nil {
		return fail(err)
	}
	procs = append(procs, ingress)
	if err := waitListening(ctx, ingress, ingressAddr, startTimeout); err != nil {
		return fail(err)
	}

	// Idle memory: listening, no request served yet.
	idleRSS, _, err := readMemStatus(ingress.pid())
	if err != nil {
		fmt.Fprintln(os.Stderr, "runner: idle RSS:", err)
	}

	directURL := "http://" + backendAddr + "/"
	ingressURL := "http://" + ingressAddr + "/"
	// One request each before committing to two full runs: a misrouted ingress would
	// otherwise show up only as a 100% error rate after the whole duration.
	for _, u := range []string{directURL, ingressURL} {
		if err := probe(ctx, u); err != nil {
			return fail(err)
		}
	}
	// The probes' kept-alive connections would otherwise sit in both servers
	// through the measured runs.
	http.DefaultClient.CloseIdleConnections()

	rep := Report{
		Rate:      o.rate,
		Duration:  o.duration.String(),
		BodyBytes: o.size,
		K6Version: k6Version,
		Ingress:   strings.Join(ingressArgv, " "),
		RSS:       RSS{IdleKiB: idleRSS, SampleIntervalMs: float64(rssInterval) / float64(time.Millisecond)},
	}
	thresholdsCrossed := false

	rep.Direct, err = runK6(ctx, k6, root, o, "direct", directURL, filepath.Join(tmp, "direct.json"))
	if err != nil && !errors.Is(err, errThresholds) {
		return fail(err)
	}
	thresholdsCrossed = thresholdsCrossed || err != nil

	select {
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-time.After(pauseBetween):
	}

	sampler := sampleRSS(ingress.pid(), rssInterval)
	rep.Through, err = runK6(ctx, k6, root, o, "ingress", ingressURL, filepath.Join(tmp, "ingress.json"))
	rep.RSS.PeakKiB = sampler.stop()
	if err != nil && !errors.Is(err, errThresholds) {
		return fail(err)
	}
	thresholdsCrossed = thresholdsCrossed || err != nil
	if _, hwm, err := readMemStatus(ingress.pid()); err == nil {
		rep.RSS.HWMKiB = hwm
	}
	if ingress.exited() {
		return fail(fmt.Errorf("the ingress exited during the run (%v); its output:\n%s", ingress.waitErr, ingress.logTail(20)))
	}

	rep.Compare = compare(rep.Direct, rep.Through)
	fmt.Println()
	if err := writeTable(os.Stdout, rep); err != nil {
		return fail(err)
	}
	if o.jsonPath != "" {
		if err := writeJSON(o.jsonPath, rep); err != nil {
			return fail(err)
		}
	}
	if thresholdsCrossed {
		return 1
	}
	return 0
}

// errThresholds marks a k6 run that completed but crossed a threshold (k6 exit 99):
// its summary is still valid and is reported.
var errThresholds = errors.New("k6 thresholds crossed")

// runK6 runs the scenario once at url and parses the summary it writes.
func runK6(ctx context.Context, k6, root string, o options, target, url, summaryPath string) (Result, error) {
	fmt.Fprintf(os.Stderr, "runner: k6 %s: %d req/s for %s at %s\n", target, o.rate, o.duration, url)
	// The scenario's own gracefulStop is 5s; the rest is slack for k6's start-up.
	ctx, cancel := context.WithTimeout(ctx, o.duration+k6ExtraTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k6, "run", "--quiet", "--no-color",
		// k6 otherwise reports usage to its vendor over the network.
		"--no-usage-report",
		"-e", "TARGET="+url,
		"-e", "RATE="+strconv.Itoa(o.rate),
		"-e", "DURATION="+o.duration.String(),
		"-e", "SUMMARY="+summaryPath,
		scenario)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "K6_NO_USAGE_REPORT=true")
	cmd.Stdout = os.Stderr // the scenario's one-line summary; stdout is for the table
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// On cancel k6 gets SIGINT, on which it stops the test and still writes its
	// summary; WaitDelay then bounds how long we give it before SIGKILL.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 15 * time.Second

	runErr := cmd.Run()
	if ctx.Err() != nil {
		return Result{}, fmt.Errorf("k6 %s: %w", target, ctx.Err())
	}
	crossed := false
	if runErr != nil {
		var exit *exec.ExitError
		// 99 is k6's exit code for "ran to the end, thresholds crossed".
		if errors.As(runErr, &exit) && exit.ExitCode() == 99 {
			crossed = true
		} else {
			return Result{}, fmt.Errorf("k6 %s: %w", target, runErr)
		}
	}
	res, err := parseSummaryFile(summaryPath)
	if err != nil {
		return Result{}, err
	}
	res.Target, res.URL = target, url
	if crossed {
		return res, errThresholds
	}
	return res, nil
}

// probe sends one GET and wants a 200.
func probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: status %d, want 200", url, resp.StatusCode)
	}
	return nil
}

// moduleRoot finds the Portcullis checkout from the working directory, so that the
// runner works from any folder inside it.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/portcullis/portcullis\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the Portcullis module: run from the repository")
		}
		dir = parent
	}
}

// findK6 resolves -k6, then PATH, then the folder install-k6.sh installs into
// (which is often not on PATH in a fresh shell).
func findK6(flagPath string) (string, error) {
	if flagPath != "" {
		return exec.LookPath(flagPath)
	}
	if p, err := exec.LookPath("k6"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	p := filepath.Join(filepath.SplitList(gopath)[0], "bin", "k6")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", errors.New("k6 not found on PATH or in $(go env GOPATH)/bin: run loadtest/install-k6.sh")
}

// k6VersionOf returns k6's own version line ("k6 v1.8.1 (...)"), or "" if it will
// not say within a few seconds.
func k6VersionOf(ctx context.Context, k6 string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, k6, "version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
