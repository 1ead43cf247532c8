// Package procstat is what the measuring programs under loadtest/ share: starting
// a child process in its own process group and waiting until it listens, stopping
// it, reading its CPU time from /proc, and the median of a few rounds.
//
// It is not for tests: the programs that use it are run by hand (see each one's
// README), and CPU time from /proc is Linux only.
package procstat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a child process, in a process group of its own, logging to a file.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

// PID is the child's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM, and SIGKILL after 5 s.
func (p *Proc) Stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

// Start runs bin with args, its output in dir/name.log, and waits up to 15 s for
// addr to accept connections. On failure the error carries the child's log.
func Start(dir, name, addr, bin string, args ...string) (*Proc, error) {
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
	p := &Proc{Name: name, cmd: cmd, log: logf, done: make(chan struct{})}
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
			p.Stop()
			out, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("%s not listening on %s after 15s; its log:\n%s", name, addr, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// CPUTime is utime+stime of every thread of pid, from /proc/<pid>/stat.
func CPUTime(pid int) (time.Duration, error) {
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

// PerRequest returns pid's CPU time in microseconds per request over one call of
// load, which reports how many requests it made.
func PerRequest(pid int, load func() (int, error)) (float64, error) {
	before, err := CPUTime(pid)
	if err != nil {
		return 0, err
	}
	n, err := load()
	if err != nil {
		return 0, err
	}
	after, err := CPUTime(pid)
	if err != nil {
		return 0, err
	}
	return float64((after - before).Microseconds()) / float64(n), nil
}

// Median of v (v is not changed).
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// FreeAddr returns a loopback address that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
