// Command transcodebench measures what REST/JSON transcoding at the ingress
// costs, side by side in one run, against the two references of the issue's
// targets:
//
//	(a) the ingress with a transcode route (REST in, gRPC over h2c out),
//	(b) grpc-gateway (its ServeMux and the handlers generated for the same
//	    proto, behind net/http's server) in a process of its own,
//	(c) the ingress proxying gRPC as it is (gRPC in, gRPC out),
//
// all three in front of the same gRPC backend (the transcoder's test library).
// The same client drives each in turn, round after round (REST for a and b, gRPC
// for c, the same request messages), and the CPU of the process under load is
// read from /proc/<pid>/stat: the client, the backend and this program are not
// counted. It reports CPU µs per request of each, a/b (target: at most 1.2) and
// a-c (target: at most 15 µs).
//
//	go run ./loadtest/transcodebench -requests 20000 -rounds 5
//
// It is a measuring tool run by hand; the figures are in docs/translate.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/portcullis/portcullis/loadtest/internal/procstat"
)

type options struct {
	requests int
	conns    int
	rounds   int
	ingress  string
	keep     bool
	work     string
}

func main() {
	var o options
	flag.IntVar(&o.requests, "requests", 20000, "requests per round and variant")
	flag.IntVar(&o.conns, "conns", 16, "concurrent requests (HTTP/1.1 keep-alive connections for REST; streams over 4 connections for gRPC)")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds; each drives b, a and c in turn (the order rotates)")
	flag.StringVar(&o.ingress, "ingress", "", "ingress binary (default: go build ./cmd/ingress)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, logs)")
	flag.StringVar(&o.work, "workloads", "get,create", "comma-separated workloads: get (GetBook by path), create (CreateBook with a JSON body)")
	flag.Parse()
	if o.requests <= 0 || o.conns <= 0 || o.rounds <= 0 {
		fmt.Fprintln(os.Stderr, "transcodebench: -requests, -conns and -rounds must be positive")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "transcodebench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	var works []workload
	for _, name := range strings.Split(o.work, ",") {
		w, ok := workloads[strings.TrimSpace(name)]
		if !ok {
			return fmt.Errorf("-workloads: no workload %q (have get, create)", name)
		}
		works = append(works, w)
	}
	if _, err := os.Stat(descriptorSet); err != nil {
		return fmt.Errorf("run from the module root (%s not found)", descriptorSet)
	}
	dir, err := os.MkdirTemp("", "transcodebench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("files in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bins := map[string]string{"libraryd": "./translate/internal/testpb/libraryd", "gwserver": "./translate/internal/testpb/gwserver"}
	if o.ingress == "" {
		bins["ingress"] = "./cmd/ingress"
	}
	for name, pkg := range bins {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", pkg, err)
		}
		bins[name] = out
	}
	if o.ingress != "" {
		bins["ingress"] = o.ingress
	}
	var addrs [4]string
	for i := range addrs {
		if addrs[i], err = procstat.FreeAddr(); err != nil {
			return err
		}
	}
	backendAddr, gwAddr, restAddr, grpcAddr := addrs[0], addrs[1], addrs[2], addrs[3]
	backend, err := procstat.Start(dir, "libraryd", backendAddr, bins["libraryd"], "-addr", backendAddr)
	if err != nil {
		return err
	}
	defer backend.Stop()
	gw, err := procstat.Start(dir, "gwserver", gwAddr, bins["gwserver"], "-addr", gwAddr, "-backend", backendAddr)
	if err != nil {
		return err
	}
	defer gw.Stop()
	restCfg, grpcCfg, err := writeConfigs(dir, restAddr, grpcAddr, backendAddr)
	if err != nil {
		return err
	}
	rest, err := procstat.Start(dir, "ingress-transcode", restAddr, bins["ingress"], "-config", restCfg, "-admin", "", "-data", filepath.Join(dir, "data-a"))
	if err != nil {
		return err
	}
	defer rest.Stop()
	plain, err := procstat.Start(dir, "ingress-grpc", grpcAddr, bins["ingress"], "-config", grpcCfg, "-admin", "", "-data", filepath.Join(dir, "data-c"))
	if err != nil {
		return err
	}
	defer plain.Stop()

	d, err := newDriver(o.conns)
	if err != nil {
		return err
	}
	defer d.close()
	targets := []target{
		{name: "b grpc-gateway", proc: gw, drive: func(w workload, n int) error { return d.rest(gwAddr, w, n) }},
		{name: "a transcode", proc: rest, drive: func(w workload, n int) error { return d.rest(restAddr, w, n) }},
		{name: "c gRPC proxy", proc: plain, drive: func(w workload, n int) error { return d.grpc(grpcAddr, w, n) }},
	}
	if err := d.dialGRPC(grpcAddr); err != nil {
		return err
	}
	fmt.Printf("REST/JSON transcoding: CPU µs per request of the process under load; %d requests per round and variant, %d at a time\n", o.requests, o.conns)
	fail := false
	for _, w := range works {
		// Warm up: connections, pools, caches, the runtime's heap.
		for _, t := range targets {
			if err := t.drive(w, 2000); err != nil {
				return fmt.Errorf("%s, %s warm-up: %w", t.name, w.name, err)
			}
		}
		fmt.Printf("\nworkload %s: %s\n", w.name, w.describe)
		fmt.Printf("%-6s %16s %16s %16s %8s %10s\n", "round", "b grpc-gateway", "a transcode", "c gRPC proxy", "a/b", "a-c µs")
		var bs, as, cs, ratios, diffs []float64
		for r := 0; r < o.rounds; r++ {
			got := map[string]float64{}
			for i := range targets {
				t := targets[(i+r)%len(targets)]
				us, err := procstat.PerRequest(t.proc.PID(), func() (int, error) { return o.requests, t.drive(w, o.requests) })
				if err != nil {
					return fmt.Errorf("%s, %s: %w", t.name, w.name, err)
				}
				got[t.name] = us
			}
			b, a, c := got[targets[0].name], got[targets[1].name], got[targets[2].name]
			bs, as, cs = append(bs, b), append(as, a), append(cs, c)
			ratios, diffs = append(ratios, a/b), append(diffs, a-c)
			fmt.Printf("%-6d %16.1f %16.1f %16.1f %7.2fx %10.1f\n", r+1, b, a, c, a/b, a-c)
		}
		mr, md := procstat.Median(ratios), procstat.Median(diffs)
		fmt.Printf("%-6s %16.1f %16.1f %16.1f %7.2fx %10.1f\n", "median", procstat.Median(bs), procstat.Median(as), procstat.Median(cs), mr, md)
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			fail = true
			return "NOT met"
		}
		fmt.Printf("targets: a/b <= 1.20x: %s (%.2fx); a-c <= 15 µs: %s (%.1f µs)\n", verdict(mr <= 1.2), mr, verdict(md <= 15), md)
	}
	if fail {
		return errors.New("a target was not met (figures above)")
	}
	return nil
}

type target struct {
	name  string
	proc  *procstat.Proc
	drive func(w workload, n int) error
}
