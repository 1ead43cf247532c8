// Command edgebench measures what the ingress's edge chain costs: the CPU the
// ingress spends per request with cors, jwt (RS256 and ES256 tokens), a per-subject
// rate limit, metrics and an access-log line for every request, against the same
// ingress terminating TLS 1.3 and forwarding with no filters. Both run at once on
// loopback and are driven alternately by the same keep-alive client, so that the
// machine's noise falls on both. It also measures the ingress's CPU per full and
// per resumed TLS handshake.
//
//	go run ./loadtest/edgebench -requests 30000 -rounds 3
//
// CPU is read from /proc/<pid>/stat of the ingress processes only: the client, the
// backend and this program are not counted. It is a measuring tool run by hand; see
// docs/performance.md for figures.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/loadtest/internal/procstat"
)

type options struct {
	requests   int
	conns      int
	rounds     int
	handshakes int
	ingress    string
	keep       bool
	profile    string
}

func main() {
	var o options
	flag.IntVar(&o.requests, "requests", 30000, "requests per round and variant")
	flag.IntVar(&o.conns, "conns", 16, "keep-alive connections (and concurrent handshakes)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each drives the baseline then the edge chain")
	flag.IntVar(&o.handshakes, "handshakes", 3000, "TLS handshakes measured for each kind (full, resumed); 0 skips")
	flag.StringVar(&o.ingress, "ingress", "", "ingress binary (default: go build ./cmd/ingress)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, keys, logs)")
	flag.StringVar(&o.profile, "cpuprofile", "", "write a 5s CPU profile of the edge ingress under load to this file, then stop")
	flag.Parse()
	if o.requests <= 0 || o.conns <= 0 || o.rounds <= 0 || o.handshakes < 0 {
		fmt.Fprintln(os.Stderr, "edgebench: -requests, -conns and -rounds must be positive")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "edgebench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "edgebench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("files in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	m, err := newMaterial(dir, 64)
	if err != nil {
		return err
	}
	backend, stopBackend, err := startBackend(1024)
	if err != nil {
		return err
	}
	defer stopBackend()
	if o.ingress == "" {
		o.ingress = filepath.Join(dir, "ingress")
		cmd := exec.Command("go", "build", "-o", o.ingress, "./cmd/ingress")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/ingress (run from the module root): %w", err)
		}
	}
	baseAddr, err := procstat.FreeAddr()
	if err != nil {
		return err
	}
	edgeAddr, err := procstat.FreeAddr()
	if err != nil {
		return err
	}
	baseCfg, edgeCfg, err := writeConfigs(m, baseAddr, edgeAddr, backend)
	if err != nil {
		return err
	}
	base, err := startIngress(o.ingress, baseCfg, filepath.Join(dir, "baseline"), baseAddr, "")
	if err != nil {
		return err
	}
	defer base.Stop()
	edgeAdmin := ""
	if o.profile != "" {
		if edgeAdmin, err = procstat.FreeAddr(); err != nil {
			return err
		}
	}
	edge, err := startIngress(o.ingress, edgeCfg, filepath.Join(dir, "edge"), edgeAddr, edgeAdmin)
	if err != nil {
		return err
	}
	defer edge.Stop()

	tlsConf := &tls.Config{RootCAs: m.roots, ServerName: audience, MinVersion: tls.VersionTLS13}
	baseClient := newClient(tlsConf, o.conns)
	edgeClient := newClient(tlsConf, o.conns)
	// Warm up: connections, key-set loading, the ingress's pools and caches.
	for _, v := range []struct {
		c    *http.Client
		addr string
	}{{baseClient, baseAddr}, {edgeClient, edgeAddr}} {
		if _, err := drive(v.c, v.addr, m.tokens, o.conns, 2000); err != nil {
			return err
		}
	}

	if o.profile != "" {
		return profileEdge(edgeClient, edgeAddr, edgeAdmin, m.tokens, o)
	}
	fmt.Printf("edge chain against TLS alone: HTTP/1.1 keep-alive over TLS 1.3, %d connections, %d requests per round\n", o.conns, o.requests)
	fmt.Printf("%-6s %18s %18s %8s\n", "round", "TLS alone µs/req", "edge µs/req", "ratio")
	var ratios, baseUS, edgeUS []float64
	for r := 1; r <= o.rounds; r++ {
		b, err := procstat.PerRequest(base.PID(), func() (int, error) { return drive(baseClient, baseAddr, m.tokens, o.conns, o.requests) })
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		e, err := procstat.PerRequest(edge.PID(), func() (int, error) { return drive(edgeClient, edgeAddr, m.tokens, o.conns, o.requests) })
		if err != nil {
			return fmt.Errorf("edge: %w", err)
		}
		ratios, baseUS, edgeUS = append(ratios, e/b), append(baseUS, b), append(edgeUS, e)
		fmt.Printf("%-6d %18.1f %18.1f %7.2fx\n", r, b, e, e/b)
	}
	fmt.Printf("%-6s %18.1f %18.1f %7.2fx\n", "median", procstat.Median(baseUS), procstat.Median(edgeUS), procstat.Median(ratios))

	if o.handshakes > 0 {
		fmt.Printf("\nTLS 1.3 handshakes at the ingress (ECDSA P-256 certificate, X25519), %d each, %d at a time;\n", o.handshakes, o.conns)
		fmt.Println("each connection sends one request and closes; the CPU is the ingress's, per connection")
		for _, resume := range []bool{false, true} {
			us, resumed, err := measureHandshakes(base.PID(), baseAddr, tlsConf, o.conns, o.handshakes, resume)
			if err != nil {
				return err
			}
			kind := "full"
			if resume {
				kind = "resumed"
			}
			fmt.Printf("%-8s %8.1f µs CPU per connection = %7.0f connections per core-second (%d of %d resumed)\n",
				kind, us, 1e6/us, resumed, o.handshakes)
		}
	}
	return nil
}

func newClient(tc *tls.Config, conns int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     tc.Clone(),
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			ForceAttemptHTTP2:   false,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1
		},
	}
}

// drive sends n requests over conns workers and fails on any answer but 200.
func drive(c *http.Client, addr string, tokens []string, conns, n int) (int, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	for range conns {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := get(c, addr, tokens[i%len(tokens)]); err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n)) // stop everyone
					return
				}
			}
		})
	}
	wg.Wait()
	return n, firstErr
}

func get(c *http.Client, addr, token string) error {
	req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/api/items", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Origin", origin)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d (want 200)", req.URL, resp.StatusCode)
	}
	return nil
}

// measureHandshakes opens n connections, conns at a time, each doing a handshake
// (full, or resumed from a ticket of an earlier connection) and one request.
func measureHandshakes(pid int, addr string, base *tls.Config, conns, n int, resume bool) (float64, int, error) {
	tc := base.Clone()
	tc.NextProtos = []string{"http/1.1"}
	if resume {
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(conns * 4)
		for range conns { // prime the cache with tickets
			if _, err := oneConn(addr, tc); err != nil {
				return 0, 0, err
			}
		}
	}
	var resumed atomic.Int64
	us, err := procstat.PerRequest(pid, func() (int, error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr error
		var once sync.Once
		for range conns {
			wg.Go(func() {
				for int(next.Add(1)) <= n {
					r, err := oneConn(addr, tc)
					if err != nil {
						once.Do(func() { firstErr = err })
						return
					}
					if r {
						resumed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return n, firstErr
	})
	return us, int(resumed.Load()), err
}

func oneConn(addr string, tc *tls.Config) (bool, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tc)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// The request has no Authorization: the baseline route has no filters.
	if _, err := io.WriteString(c, "GET /hs HTTP/1.1\r\nHost: "+audience+"\r\nConnection: close\r\n\r\n"); err != nil {
		return false, err
	}
	b, err := io.ReadAll(c) // also reads the session tickets TLS 1.3 sends after the handshake
	if err != nil {
		return false, err
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		return false, fmt.Errorf("handshake connection: unexpected answer %.40q", b)
	}
	return c.ConnectionState().DidResume, nil
}

func startBackend(size int) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	body := []byte(strings.Repeat("x", size))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(l)
	return l.Addr().String(), func() { srv.Close() }, nil
}

// startIngress runs the ingress binary on cfg, with its data and log beside
// dataDir, and waits until it listens on addr.
func startIngress(bin, cfg, dataDir, addr, admin string) (*procstat.Proc, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	return procstat.Start(filepath.Dir(dataDir), filepath.Base(dataDir), addr, bin, "-config", cfg, "-admin", admin, "-data", dataDir)
}

// profileEdge drives the edge ingress for a little longer than a 5 s CPU profile
// that it fetches from the ingress's admin listener meanwhile.
func profileEdge(c *http.Client, addr, admin string, tokens []string, o options) error {
	done := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := drive(c, addr, tokens, o.conns, 2000); err != nil {
				done <- err
				return
			}
		}
	}()
	resp, err := http.Get("http://" + admin + "/debug/pprof/profile?seconds=5")
	close(stop)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(o.profile)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println("profile written to", o.profile)
	return <-done
}
