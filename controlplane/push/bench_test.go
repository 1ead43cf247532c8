package push_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/push/pushtest"
	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/controlplane/store"
)

// BenchmarkPushToAck1000 connects 1,000 sidecars (real gRPC streams over
// loopback, on 8 shared connections), each scoped to its own Workload in one
// namespace, then per iteration writes the namespace's Telemetry, which is in
// every sidecar's scope, and waits for all 1,000 ACKs (ns/op is that whole round). It reports the latency from
// the write to each proxy's ACK (p50, p99, and the last), and the heap of the
// process (control plane, embedded etcd and the simulated proxies together)
// before and after the proxies connected.
//
//	go test -run '^$' -bench PushToAck1000 -benchtime 5x ./controlplane/push/
func BenchmarkPushToAck1000(b *testing.B) {
	const proxies, conns = 1000, 8
	cp := pushtest.Start(b, pushtest.Options{})
	writeMesh(b, cp, proxies)
	heapBefore := heapInUse()

	token := cp.Token("sidecar", "mesh", "*")
	ccs := make([]*grpc.ClientConn, conns)
	for i := range ccs {
		ccs[i] = dial(b, cp.Addr)
	}
	acks := make(chan time.Time, proxies)
	ready := make(chan struct{}, proxies)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, deferred below
	defer cancel()
	for i := range proxies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			simulateSidecar(ctx, ccs[i%conns], token, fmt.Sprintf("w-%04d", i), ready, acks)
		}()
	}
	collect(b, ready, proxies, "initial configs")
	heapAfter := heapInUse()

	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		mode := []string{"all", "errors"}[i%2]
		start := time.Now()
		cp.Apply(hdr + "kind: Telemetry\nmetadata: {name: telemetry, namespace: mesh}\nspec: {accessLog: " + mode + "}\n")
		for _, at := range collect(b, acks, proxies, "ACKs") {
			lat = append(lat, at.Sub(start))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "last-ms")
	b.ReportMetric(float64(heapBefore)/(1<<20), "heap-before-MiB")
	b.ReportMetric(float64(heapAfter)/(1<<20), "heap-1000-proxies-MiB")
}

// writeMesh stores n workloads in namespace mesh (in parallel: one write at a time
// would take etcd's fsync n times) and a Telemetry.
func writeMesh(b *testing.B, cp *pushtest.ControlPlane, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	var last int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				name := fmt.Sprintf("w-%04d", i)
				doc := fmt.Sprintf(hdr+"kind: Workload\nmetadata: {name: %[1]s, namespace: mesh}\n"+
					"spec: {serviceAccount: %[1]s, inbound: [{port: 8080, protocol: HTTP, appPort: 18080}]}\n", name)
				rev, err := cp.Store.Put(ctx, resources.Key("Workload", "mesh", name), []byte(doc), store.Any)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				last = max(last, rev)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	if _, err := cp.Index.WaitRevision(ctx, last); err != nil {
		b.Fatal(err)
	}
	cp.Apply(hdr + "kind: Telemetry\nmetadata: {name: telemetry, namespace: mesh}\nspec: {accessLog: errors}\n")
}

// simulateSidecar holds one stream: it ACKs every update, reports the first on
// ready and every later one's ACK time on acks.
func simulateSidecar(ctx context.Context, cc *grpc.ClientConn, token, name string, ready chan<- struct{}, acks chan<- time.Time) {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	stream, err := cpv1.NewConfigPushClient(cc).Stream(ctx)
	if err != nil {
		return
	}
	hello := &cpv1.Hello{Role: "sidecar", Namespace: "mesh", Name: name, Node: name}
	if stream.Send(&cpv1.StreamRequest{Kind: &cpv1.StreamRequest_Hello{Hello: hello}}) != nil {
		return
	}
	for first := true; ; first = false {
		u, err := stream.Recv()
		if err != nil {
			return
		}
		ack := &cpv1.Ack{Version: u.GetVersion(), Accepted: len(u.GetDocuments()) > 0}
		if stream.Send(&cpv1.StreamRequest{Kind: &cpv1.StreamRequest_Ack{Ack: ack}}) != nil {
			return
		}
		if first {
			ready <- struct{}{}
		} else {
			acks <- time.Now()
		}
	}
}

// collect takes n values from ch within a minute.
func collect[T any](b *testing.B, ch <-chan T, n int, what string) []T {
	out := make([]T, 0, n)
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for len(out) < n {
		select {
		case v := <-ch:
			out = append(out, v)
		case <-timeout.C:
			b.Fatalf("%s: %d of %d within a minute", what, len(out), n)
		}
	}
	return out
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
