package acmetest

import (
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/portcullis/portcullis/gateway/config"
)

// ReplicasShareStorage is the scenario a certmagic.Storage must pass to back
// several replicas of the ingress. newStorage is called once per replica and
// must return storages over the same state (the same directory, the same
// control-plane store). Two replicas, each a plain-HTTP and an HTTPS listener
// with a Manager, share their ports (SO_REUSEPORT), so the CA's validation
// requests reach either one. Both Managers start obtaining the same name at the
// same moment; the storage's locks must make that one order and one issued
// certificate, which both replicas then serve.
//
// Both replicas run in the test's process, where certmagic keeps the answers to
// pending challenges in memory for every Manager: the scenario exercises the
// storage's locks and shared records (account, certificate, key), not its role
// in answering a challenge placed by another process.
func ReplicasShareStorage(t *testing.T, newStorage func(t *testing.T) certmagic.Storage) {
	const name = "replicated.example.test"
	httpPort, tlsPort := FreePorts(t)
	p := StartPebble(t, PebbleOptions{HTTPPort: httpPort, TLSPort: tlsPort})
	acme := config.ACME{Domains: []string{name}}
	var edges [2]*Edge
	for i := range edges {
		edges[i] = StartEdge(t, p, httpPort, tlsPort, EdgeConfig{ACME: acme, Storage: newStorage(t), DeferStart: true})
	}
	var ready, wg sync.WaitGroup
	ready.Add(1)
	for _, e := range edges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Wait()
			if err := e.Manager.Start(); err != nil {
				t.Error(err)
			}
		}()
	}
	ready.Done() // both start together
	wg.Wait()

	var leaves [2]string
	for i, e := range edges {
		leaves[i] = e.WaitCertificate(t, name, 30*time.Second).SerialNumber.String()
	}
	if leaves[0] != leaves[1] {
		t.Errorf("the replicas serve different certificates: serials %s and %s", leaves[0], leaves[1])
	}
	if p.Orders() != 1 || p.Issued() != 1 {
		t.Errorf("Pebble saw %d orders and issued %d certificates for one name and two replicas; want 1 and 1", p.Orders(), p.Issued())
	}
	obtained := edges[0].Manager.Stats().Obtained + edges[1].Manager.Stats().Obtained
	if obtained != 1 {
		t.Errorf("the replicas report %d certificates obtained between them, want 1", obtained)
	}
}
