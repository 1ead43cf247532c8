package h1_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/listener/h1"
)

// TestCPUPerRequest measures the server process's CPU time per request (user +
// system, all threads, from /proc) under wrk -t1 -c32, for h1.ServeConn and for
// net/http's server with the same 1 KiB handler, each in a child process (this
// test binary, started again). It runs only with H1_CPU=1 and wrk on the PATH:
//
//	H1_CPU=1 go test -run TestCPUPerRequest -v ./gateway/listener/h1/
//
// H1_CPU_SECS (default 5) and H1_CPU_ROUNDS (default 2) tune it.
func TestCPUPerRequest(t *testing.T) {
	if os.Getenv("H1_CPU") != "1" {
		t.Skip("set H1_CPU=1 to measure")
	}
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk not installed")
	}
	secs := envInt("H1_CPU_SECS", 5)
	rounds := envInt("H1_CPU_ROUNDS", 2)
	results := map[string][]string{}
	for r := 0; r < rounds; r++ {
		for _, kind := range []string{"h1", "net-http"} {
			us, rps := measureChild(t, wrk, kind, secs)
			results[kind] = append(results[kind], fmt.Sprintf("%.1f µs/req (%.0f rps)", us, rps))
			t.Logf("round %d %-8s %.1f µs CPU per request, %.0f requests/s", r+1, kind, us, rps)
		}
	}
	for k, v := range results {
		t.Logf("%-8s %s", k, strings.Join(v, " / "))
	}
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

func measureChild(t *testing.T, wrk, kind string, secs int) (usPerReq, rps float64) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCPUChild$")
	cmd.Env = append(os.Environ(), "H1_CPU_CHILD="+kind)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addrc <- a
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(10 * time.Second):
		t.Fatal("child did not start")
	}
	url := "http://" + addr + "/"
	exec.Command(wrk, "-t1", "-c32", "-d1s", url).Run() // warm up
	c0 := procCPU(t, cmd.Process.Pid)
	out, err := exec.Command(wrk, "-t1", "-c32", fmt.Sprintf("-d%ds", secs), url).CombinedOutput()
	c1 := procCPU(t, cmd.Process.Pid)
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(\d+) requests in`).FindSubmatch(out)
	if m == nil || strings.Contains(string(out), "Non-2xx") || strings.Contains(string(out), "Socket errors") {
		t.Fatalf("wrk output:\n%s", out)
	}
	n, _ := strconv.ParseFloat(string(m[1]), 64)
	return (c1 - c0) * 1e6 / n, n / float64(secs)
}

// procCPU returns utime+stime of pid in seconds (all its threads).
func procCPU(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 on
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// TestCPUChild is the server of TestCPUPerRequest; it serves until killed.
func TestCPUChild(t *testing.T) {
	kind := os.Getenv("H1_CPU_CHILD")
	if kind == "" {
		t.Skip("child of TestCPUPerRequest")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	os.Stdout.Sync()
	switch kind {
	case "h1":
		o := &h1.Options{MaxHeaderBytes: 32 << 10, MaxHeaders: 100, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
		for {
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			go h1.ServeConn(c, benchHandler, o)
		}
	default:
		hs := &http.Server{Handler: benchHandler, MaxHeaderBytes: 32 << 10, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
		t.Fatal(hs.Serve(ln))
	}
}
