package cpstorage_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/server"
	"github.com/portcullis/portcullis/controlplane/server/servertest"
	"github.com/portcullis/portcullis/gateway/certs/cpstorage"
	"github.com/portcullis/portcullis/internal/testutil"
)

// Proxy credentials the test control plane knows besides servertest's
// (servertest.Proxy: an ingress of namespace shop).
const (
	otherIngress = "other-ingress" // an ingress of namespace other
	shopEgress   = "shop-egress"   // an egress proxy of namespace shop
)

// controlPlane is a real control plane (servertest: embedded store, TLS on
// loopback, the real authentication interceptors) with a few proxy tokens.
type controlPlane struct {
	env    *servertest.Env
	tokens map[string]string // by servertest principal or the constants above
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	cp := &controlPlane{tokens: map[string]string{}}
	extra := []server.ProxyTokenConfig{
		{Name: otherIngress, Role: "ingress", Namespace: "other", ProxyName: "*"},
		{Name: shopEgress, Role: "egress", Namespace: "shop", ProxyName: "*"},
	}
	for i := range extra {
		tok, err := auth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		cp.tokens[extra[i].Name] = tok
		extra[i].SHA256 = auth.TokenDigest(tok)
	}
	cp.env = servertest.Start(t, servertest.Options{Edit: func(c *server.Config) {
		c.ProxyTokens = append(c.ProxyTokens, extra...)
	}})
	for _, who := range []string{servertest.Proxy, servertest.Admin} {
		cp.tokens[who] = cp.env.Token(t, who)
	}
	return cp
}

// storage is a proxy's Storage with the token of who, to addrs (default: the
// control plane), closed when the test ends.
func (cp *controlPlane) storage(t *testing.T, who string, log *slog.Logger, addrs ...string) *cpstorage.Storage {
	t.Helper()
	if len(addrs) == 0 {
		addrs = []string{cp.env.GRPCAddr}
	}
	tok := cp.tokens[who]
	if tok == "" {
		tok = who // a token the control plane does not know
	}
	s, err := cpstorage.New(cpstorage.Options{Addresses: addrs, TLS: cp.env.TLSConfig(t, "", ""), Token: tok, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// forwarder relays TCP connections to a target until killed: a network path
// that the test can cut, as a crashed proxy or a broken link would.
type forwarder struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  []net.Conn
	killed bool
	wg     sync.WaitGroup
}

func startForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln, target: target}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.kill)
	return f
}

func (f *forwarder) Addr() string { return f.ln.Addr().String() }

func (f *forwarder) accept() {
	defer f.wg.Done()
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", f.target, 5*time.Second)
		if err != nil {
			in.Close()
			continue
		}
		if !f.track(in, out) {
			return
		}
		for _, pair := range [][2]net.Conn{{in, out}, {out, in}} {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				io.Copy(pair[0], pair[1])
				pair[0].Close()
				pair[1].Close()
			}()
		}
	}
}

func (f *forwarder) track(conns ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.killed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	f.conns = append(f.conns, conns...)
	return true
}

// kill closes the listener and every relayed connection, and waits for the
// relays to stop.
func (f *forwarder) kill() {
	f.mu.Lock()
	f.killed = true
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	f.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	f.wg.Wait()
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	testutil.SyncBuffer
}

func (b *logBuffer) contains(s string) bool {
	return strings.Contains(b.String(), s)
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }
