package upstream_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/upstream"
)

// eventLog records every Observer event of one cluster in order, as
// "added A", "removed A", "ejected A", "healthy A=false".
type eventLog struct {
	upstream.NopObserver
	mu     sync.Mutex
	events []string
}

var _ upstream.Observer = (*eventLog)(nil)

func (l *eventLog) add(ev string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *eventLog) EndpointAdded(_, addr string)   { l.add("added " + addr) }
func (l *eventLog) EndpointRemoved(_, addr string) { l.add("removed " + addr) }
func (l *eventLog) Ejected(_, addr string)         { l.add("ejected " + addr) }
func (l *eventLog) EndpointHealth(_, addr string, healthy bool) {
	if healthy {
		l.add("healthy " + addr + "=true")
	} else {
		l.add("healthy " + addr + "=false")
	}
}

func (l *eventLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// checkPaired fails unless every address was added exactly once, before anything
// else about it, and removed exactly once, after everything else about it: what
// an observer counting holders of an endpoint's series relies on.
func checkPaired(t *testing.T, events []string) {
	t.Helper()
	state := map[string]string{} // addr -> "added" | "removed"
	for _, ev := range events {
		kind, addr := cut(ev)
		switch kind {
		case "added":
			if state[addr] != "" {
				t.Fatalf("%q after %s: %v", ev, state[addr], events)
			}
			state[addr] = "added"
		case "removed":
			if state[addr] != "added" {
				t.Fatalf("%q while %q: %v", ev, state[addr], events)
			}
			state[addr] = "removed"
		default:
			if state[addr] != "added" {
				t.Fatalf("%q about an endpoint that is %q: %v", ev, state[addr], events)
			}
		}
	}
	for addr, s := range state {
		if s != "removed" {
			t.Fatalf("%s was never removed: %v", addr, events)
		}
	}
}

// cut splits "kind addr" and drops the "=healthy" suffix of a health event.
func cut(ev string) (kind, addr string) {
	kind, addr, _ = strings.Cut(ev, " ")
	addr, _, _ = strings.Cut(addr, "=")
	return kind, addr
}

func TestStaticEndpointsAddedAtNewRemovedAtClose(t *testing.T) {
	log := &eventLog{}
	c, err := upstream.New("test", static(addrs(2)), upstream.Options{Logger: quiet, Observer: log})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := log.snapshot(), []string{"added 10.0.0.1:80", "added 10.0.0.2:80"}; !slices.Equal(got, want) {
		t.Fatalf("after New: %v, want %v", got, want)
	}
	c.Close()
	c.Close() // idempotent: nothing is removed twice
	checkPaired(t, log.snapshot())
	if n := len(log.snapshot()); n != 4 {
		t.Fatalf("%d events, want 2 added and 2 removed: %v", n, log.snapshot())
	}
}

// A DNS answer that drops an address reports it removed once, after its last
// event (an ejection here), and Close removes the rest.
func TestDNSRefreshReportsEndpointChanges(t *testing.T) {
	r, log := &resolver{}, &eventLog{}
	spec := dnsSpec(time.Hour)
	spec.OutlierDetection = &config.OutlierDetection{Consecutive5xx: 1, MaxEjectionPercent: 100}
	c, err := upstream.New("test", spec, upstream.Options{Logger: quiet, Resolver: r, Observer: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r.set("10.2.0.1", "10.2.0.2")
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	fail(endpoints(t, c)["10.2.0.2:8080"], 1)
	r.set("10.2.0.1", "10.2.0.3")
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	r.set("10.2.0.1", "10.2.0.3") // the same answer again: no event
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"added 10.2.0.1:8080", "added 10.2.0.2:8080", "ejected 10.2.0.2:8080", "added 10.2.0.3:8080", "removed 10.2.0.2:8080"}
	if got := log.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	c.Close()
	r.set("10.2.0.4")
	if err := c.Refresh(ctx); err != nil { // after Close: nothing changes
		t.Fatal(err)
	}
	got := log.snapshot()
	checkPaired(t, got)
	if n := len(got); n != len(want)+2 {
		t.Fatalf("events after Close %v, want 10.2.0.1 and 10.2.0.3 removed and nothing else", got[len(want):])
	}
}
