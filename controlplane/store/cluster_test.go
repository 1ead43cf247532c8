package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/portcullis/portcullis/controlplane/store"
	"github.com/portcullis/portcullis/controlplane/store/storetest"
)

// testCluster is a three-member etcd cluster inside the test process, on loopback:
// what OpenCluster talks to in production, minus the machines.
type testCluster struct {
	members   []*embed.Etcd
	endpoints []string
	stopped   []bool
}

func startCluster(t *testing.T, size int) *testCluster {
	t.Helper()
	ports := freePorts(t, 2*size)
	c := &testCluster{stopped: make([]bool, size)}
	var initial []string
	for i := range size {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, ports[2*i+1]))
		c.endpoints = append(c.endpoints, "http://"+ports[2*i])
	}
	t.Cleanup(c.stopAll)
	for i := range size {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(t.TempDir(), cfg.Name)
		clientURL := url.URL{Scheme: "http", Host: ports[2*i]}
		peerURL := url.URL{Scheme: "http", Host: ports[2*i+1]}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clientURL}, []url.URL{clientURL}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURL}, []url.URL{peerURL}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "storetest-" + t.Name()
		cfg.EnableGRPCGateway = false
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		member, err := embed.StartEtcd(cfg)
		if err != nil {
			t.Fatalf("starting member %s: %v", cfg.Name, err)
		}
		c.members = append(c.members, member)
	}
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for i, m := range c.members {
		select {
		case <-m.Server.ReadyNotify():
		case err := <-m.Err():
			t.Fatalf("member m%d failed: %v", i, err)
		case <-deadline.C:
			t.Fatalf("member m%d not ready after 60s", i)
		}
	}
	return c
}

// freePorts finds n distinct free loopback ports, holding all of them open until
// each is known, so none is handed out twice.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

func (c *testCluster) stop(i int) {
	if !c.stopped[i] {
		c.stopped[i] = true
		c.members[i].Close()
	}
}

// crash stops member i as a crash would: raft halts at once, without the graceful
// stop's leadership transfer, so the others must notice the silence and elect.
// Its client connections hang until the listeners close in the background (etcd's
// Close first waits up to 2 s for open RPCs, then spends up to its request
// timeout on a leadership transfer that can no longer happen); the returned
// channel closes when the member is fully stopped.
func (c *testCluster) crash(i int) <-chan struct{} {
	c.members[i].Server.HardStop()
	c.stopped[i] = true
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.members[i].Close()
	}()
	return done
}

// stopAll stops the members still running, the raft leader last: a leader that
// stops gracefully first hands leadership to a peer, waiting up to etcd's request
// timeout (seven seconds) if that peer is stopping too; with no peer left, it
// skips the hand-over.
func (c *testCluster) stopAll() {
	leader := -1
	for i, m := range c.members {
		if !c.stopped[i] && m.Server.Leader() == m.Server.MemberID() {
			leader = i
			continue
		}
		c.stop(i)
	}
	if leader >= 0 {
		c.stop(leader)
	}
}

// raftLeader is the index of the member the others follow.
func (c *testCluster) raftLeader(t *testing.T) int {
	t.Helper()
	for i, m := range c.members {
		if !c.stopped[i] && m.Server.Leader() == m.Server.MemberID() {
			return i
		}
	}
	t.Fatal("no member is the raft leader")
	return -1
}

// TestCluster runs the suite through OpenCluster against three members, then
// stops one of them while writing, watching and leading.
func TestCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := startCluster(t, 3)
	t.Logf("cluster ready after %v", time.Since(start))
	storetest.Run(t, func(t *testing.T) store.Store { return clientOf(t, c.endpoints) })
	t.Run("MemberLoss", func(t *testing.T) { testMemberLoss(t, c) })
}

// testMemberLoss stops the raft leader among three members while a client writes
// keys (each at most once, MustNotExist, so a retried write cannot duplicate),
// another watches them and a third leads an election. Every acknowledged write
// must be listed and watched exactly once, the watch must not end, and the
// election must keep, or regain, a single leader.
func testMemberLoss(t *testing.T, c *testCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	writer := clientOf(t, c.endpoints)
	candidate := clientOf(t, c.endpoints)
	rival := clientOf(t, c.endpoints)
	// Each client's watch stream rides on one member, picked round-robin; with
	// three watchers, the stopped member most likely carries at least one, whose
	// watch must then resume on another member.
	watchers := []store.Store{clientOf(t, c.endpoints), clientOf(t, c.endpoints), clientOf(t, c.endpoints)}
	for _, s := range append([]store.Store{writer, candidate, rival}, watchers...) {
		t.Cleanup(func() { _ = s.Close() })
	}

	const election = "member-loss-election"
	leader, err := candidate.Campaign(ctx, election, "candidate")
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "member-loss/"
	_, rev, err := writer.List(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var watches []<-chan store.WatchResponse
	for _, w := range watchers {
		watches = append(watches, w.Watch(ctx, prefix, rev))
	}

	acked := map[string]string{}
	retries := 0
	write := func(i int) {
		key, value := fmt.Sprintf("%s%03d", prefix, i), fmt.Sprintf("value-%d", i)
		attempts, err := writeOnce(ctx, writer, key, value)
		if err != nil {
			t.Fatalf("write %s never acknowledged after %d attempts: %v", key, attempts, err)
		}
		retries += attempts - 1
		acked[key] = value
	}
	const before, after = 15, 15
	for i := range before {
		write(i)
	}
	victim := c.raftLeader(t)
	t.Logf("crashing m%d, the raft leader", victim)
	crashed := c.crash(victim)
	defer func() { <-crashed }() // before the cluster's clean-up removes its directory
	for i := before; i < before+after; i++ {
		write(i)
	}
	t.Logf("%d writes acknowledged, %d retried attempts", len(acked), retries)

	kvs, _, err := writer.List(ctx, prefix)
	if err != nil {
		t.Fatalf("List after losing a member: %v", err)
	}
	listed := map[string]string{}
	for _, kv := range kvs {
		listed[kv.Key] = string(kv.Value)
	}
	for key, value := range acked {
		if listed[key] != value {
			t.Errorf("acknowledged write %s=%s lost: listed as %q", key, value, listed[key])
		}
	}

	for i, watch := range watches {
		assertWatchedOnce(ctx, t, fmt.Sprintf("watcher %d", i), watch, rev, acked)
	}

	select {
	case <-leader.Lost():
		// Lost is allowed (the lease may have lapsed during the re-election); a
		// leader must then be elected again through the remaining members.
		t.Log("leadership lost with the member; campaigning again")
		again, err := candidate.Campaign(ctx, election, "candidate")
		if err != nil {
			t.Fatalf("no new leader after losing a member: %v", err)
		}
		leader = again
	default:
		t.Log("leadership survived the member's loss")
	}
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if l, err := rival.Campaign(short, election, "rival"); err == nil {
		_ = l.Resign(ctx)
		t.Fatal("a second leader was elected beside the surviving one")
	}
	if err := leader.Resign(ctx); err != nil {
		t.Fatalf("Resign through the remaining members: %v", err)
	}
}

// assertWatchedOnce reads watch until every acknowledged key was seen, each once,
// in revision order, and nothing else.
func assertWatchedOnce(ctx context.Context, t *testing.T, name string, watch <-chan store.WatchResponse, after int64, acked map[string]string) {
	t.Helper()
	seen := map[string]int{}
	lastRev := after
	for len(seen) < len(acked) {
		select {
		case resp, ok := <-watch:
			if !ok || resp.Err != nil {
				t.Fatalf("%s: watch ended after %d of %d keys (open=%v, err=%v)", name, len(seen), len(acked), ok, resp.Err)
			}
			if resp.Revision <= lastRev {
				t.Fatalf("%s: watch went back from revision %d to %d", name, lastRev, resp.Revision)
			}
			lastRev = resp.Revision
			for _, ev := range resp.Events {
				if ev.Type != store.EventPut || string(ev.KV.Value) != acked[ev.KV.Key] {
					t.Fatalf("%s: unexpected watch event %v %s=%q", name, ev.Type, ev.KV.Key, ev.KV.Value)
				}
				if seen[ev.KV.Key]++; seen[ev.KV.Key] > 1 {
					t.Fatalf("%s: watch delivered %s twice", name, ev.KV.Key)
				}
			}
		case <-ctx.Done():
			t.Fatalf("%s: watch delivered %d of %d acknowledged writes", name, len(seen), len(acked))
		}
	}
}

// writeOnce writes key if absent, retrying through a member's loss. A retry that
// finds the key already written with our value is the earlier attempt having
// applied without its answer arriving.
func writeOnce(ctx context.Context, s store.Store, key, value string) (attempts int, err error) {
	for attempts = 1; attempts <= 60 && ctx.Err() == nil; attempts++ {
		tryCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = s.Put(tryCtx, key, []byte(value), store.MustNotExist)
		if errors.Is(err, store.ErrConflict) {
			var kv store.KV
			if kv, err = s.Get(tryCtx, key); err == nil && string(kv.Value) != value {
				err = fmt.Errorf("%s holds %q, not %q", key, kv.Value, value)
			}
		}
		cancel()
		if err == nil {
			return attempts, nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return attempts, err
}
