package cpclient_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/push/pushtest"
	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/cpclient"
)

// runClient runs cpclient.Run until the test ends; every config it is given is
// sent on the returned channel (a full channel drops it).
func runClient(t *testing.T, opts cpclient.Options) <-chan string {
	t.Helper()
	applied := make(chan string, 16)
	opts.Apply = func(set *config.Set, raw []byte) error {
		select {
		case applied <- string(raw):
		default:
		}
		return nil
	}
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := cpclient.Run(ctx, opts); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("cpclient.Run did not return within 10s of its context ending")
		}
	})
	return applied
}

// deadAddr is a loopback address that refuses connections.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A dead address in the list costs one immediate move to the next, not a backoff:
// with the backoff at 20 s, every client, wherever its random start, takes its
// config from the live control plane within seconds.
func TestDeadAddressIsSkippedWithoutBackoff(t *testing.T) {
	cp := pushtest.Start(t, pushtest.Options{})
	cp.Apply(shopConfig("v1", ""))
	dead := deadAddr(t)
	token := cp.Token("ingress", "shop", "gw")
	lists := [][]string{{dead, cp.Addr}, {cp.Addr, dead}, {dead, cp.Addr}, {cp.Addr, dead}}
	var chans []<-chan string
	for i, addrs := range lists {
		chans = append(chans, runClient(t, cpclient.Options{Addresses: addrs, Token: token,
			Role: "ingress", Namespace: "shop", Name: "gw", Node: fmt.Sprintf("gw-%d", i),
			MinBackoff: 20 * time.Second, MaxBackoff: 20 * time.Second}))
	}
	deadline := time.After(8 * time.Second) // well under the 10 s a single backoff would take at least
	for i, ch := range chans {
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("client %d (addresses %v) got no config within 8s: it waited out a backoff for the dead address", i, lists[i])
		}
	}
}

// A fleet spreads over the replicas: each client starts at a random address.
// The two listeners accept connections and never answer, so each client stays
// at its first address for the connect timeout (5 s), and the accepts counted
// before then are the clients' first choices.
func TestClientsStartAtRandomAddresses(t *testing.T) {
	const clients = 24 // all on one address by chance: 2 in 2^24
	var addrs []string
	accepted := make([]chan struct{}, 2)
	for i := range accepted {
		accepted[i] = make(chan struct{}, 2*clients)
		addrs = append(addrs, silentListener(t, accepted[i]))
	}
	started := time.Now()
	for i := range clients {
		runClient(t, cpclient.Options{Addresses: addrs, Role: "ingress", Namespace: "shop", Name: "gw",
			Node: fmt.Sprintf("gw-%02d", i), MinBackoff: time.Minute, MaxBackoff: time.Minute})
	}
	deadline := time.After(4 * time.Second) // before any client's connect timeout
	counts := make([]int, len(accepted))
	for counts[0]+counts[1] < clients {
		select {
		case <-accepted[0]:
			counts[0]++
		case <-accepted[1]:
			counts[1]++
		case <-deadline:
			t.Fatalf("after %v: %v connections; want one from each of the %d clients", time.Since(started), counts, clients)
		}
	}
	if counts[0] == 0 || counts[1] == 0 {
		t.Errorf("first connections per address %v; want the clients spread over both", counts)
	}
}

// silentListener accepts connections, holds them open without a word, and
// signals each accept on ch; it and its connections close when the test ends.
func silentListener(t *testing.T, ch chan<- struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			ch <- struct{}{}
		}
	}()
	return ln.Addr().String()
}

// When every address fails, the client tries each once, at once, then waits
// for the backoff before the next round: it neither waits between addresses
// nor spins. A stream that carries a config and is dropped at once counts as a
// failure too, so a control plane that does that cannot make the client spin.
func TestBackoffIsPerRoundOfAddresses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, attempts chan<- time.Time) string
	}{
		{"connections closed at once", closingListener},
		{"streams that carry a config and end", droppingControlPlane},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attempts := make(chan time.Time, 64)
			addrs := []string{tc.start(t, attempts), tc.start(t, attempts)}
			const wait = 4 * time.Second // the backoff waits between 2 and 4 s
			runClient(t, cpclient.Options{Addresses: addrs, Role: "ingress", Namespace: "shop", Name: "gw", Node: "n",
				MinBackoff: wait, MaxBackoff: wait})
			next := func(within time.Duration, what string) time.Time {
				t.Helper()
				select {
				case at := <-attempts:
					return at
				case <-time.After(within):
					t.Fatalf("no attempt %s within %v", what, within)
					return time.Time{}
				}
			}
			first := next(5*time.Second, "at the first address")
			second := next(wait/2-200*time.Millisecond, "at the second address before a backoff could have passed")
			select {
			case at := <-attempts:
				t.Fatalf("a third attempt %v after the second, before the round's backoff (at least %v): the client spins", at.Sub(second), wait/2)
			case <-time.After(wait/2 - 200*time.Millisecond):
			}
			third := next(wait+5*time.Second, "after the backoff")
			if gap := third.Sub(second); gap < wait/2-100*time.Millisecond {
				t.Errorf("the next round began %v after the last; want the backoff of at least %v", gap, wait/2)
			}
			t.Logf("first round: %v between the addresses; then %v of backoff", second.Sub(first), third.Sub(second))
		})
	}
}

// closingListener closes every connection it accepts, signalling each.
func closingListener(t *testing.T, accepts chan<- time.Time) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case accepts <- time.Now():
			default:
			}
		}
	}()
	return ln.Addr().String()
}

// droppingControlPlane answers every Hello with a config, then ends the stream,
// signalling each stream.
func droppingControlPlane(t *testing.T, streams chan<- time.Time) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	cpv1.RegisterConfigPushServer(gs, &dropper{streams: streams})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

type dropper struct {
	cpv1.UnimplementedConfigPushServer
	streams chan<- time.Time
}

func (d *dropper) Stream(stream cpv1.ConfigPush_StreamServer) error {
	select {
	case d.streams <- time.Now():
	default:
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	return stream.Send(&cpv1.ConfigUpdate{Version: "v1", Documents: []byte(shopConfig("v1", ""))})
}
