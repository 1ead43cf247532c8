package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// descriptorSet is the library's compiled descriptors, relative to the module root.
const descriptorSet = "translate/internal/testpb/testdata/library.binpb"

const service = "portcullis.translate.test.library.v1.Library"

// writeConfigs writes the two ingress configs: (a) a REST listener whose route
// transcodes to the library over h2c; (c) an h2c listener whose route forwards
// gRPC to the library as it is. Both log only errors, as a production edge would.
func writeConfigs(dir, restAddr, grpcAddr, backend string) (rest, grpc string, err error) {
	set, err := filepath.Abs(descriptorSet)
	if err != nil {
		return "", "", err
	}
	common := func(listener, protocol string) string {
		return fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: public}
spec:
  address: %s
  protocol: %s
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: library}
spec:
  protocol: H2C
  endpoints: [{address: %q}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Telemetry
metadata: {name: telemetry}
spec:
  accessLog: errors
---
`, listener, protocol, backend)
	}
	restCfg := common(restAddr, "HTTP") + fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: library-rest}
spec:
  listeners: [public]
  rules:
    - match: {path: {prefix: /v1/}}
      forward: {backends: [{cluster: library}]}
      filters:
        - type: transcode
          config:
            descriptorSetFile: %q
            services: [%s]
            cluster: library
`, set, service)
	grpcCfg := common(grpcAddr, "H2C") + `apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: library-grpc}
spec:
  listeners: [public]
  rules:
    - match: {path: {prefix: /}}
      forward: {backends: [{cluster: library}]}
`
	rest, grpc = filepath.Join(dir, "transcode.yaml"), filepath.Join(dir, "grpc.yaml")
	if err := os.WriteFile(rest, []byte(restCfg), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(grpc, []byte(grpcCfg), 0o600); err != nil {
		return "", "", err
	}
	return rest, grpc, nil
}

// proc is a child process this program started, in a process group of its own.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM, and SIGKILL after 5 s.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

// startProc starts bin with args, logging to dir/name.log, and waits up to 15 s
// for addr to accept connections.
func startProc(dir, name, addr, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			out, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("%s exited before listening on %s; its log:\n%s", name, addr, out)
		case <-ctx.Done():
			p.stop()
			out, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("%s not listening on %s after 15s; its log:\n%s", name, addr, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// measure returns the CPU of pid in microseconds per request over one call of load.
func measure(pid int, load func() error, n int) (float64, error) {
	before, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	if err := load(); err != nil {
		return 0, err
	}
	after, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	return float64((after - before).Microseconds()) / float64(n), nil
}

// cpuTime is utime+stime of every thread of pid, from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14 of stat
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, errors.New("unreadable utime/stime in /proc stat")
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticksPerSecond, nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}
