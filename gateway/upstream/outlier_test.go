package upstream_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/upstream"
)

// endpoints picks until it has seen every available endpoint of c, and returns
// them by address.
func endpoints(t *testing.T, c *upstream.Cluster) map[string]*upstream.Endpoint {
	t.Helper()
	available := 0
	for _, s := range c.Endpoints() {
		if s.Healthy && !s.Ejected {
			available++
		}
	}
	m := map[string]*upstream.Endpoint{}
	for range 1000 {
		ep := pick(t, c, nil)
		m[ep.Addr] = ep
		if len(m) == available {
			return m
		}
	}
	t.Fatalf("saw %d of %d endpoints", len(m), available)
	return nil
}

func outlierCluster(t *testing.T, n, maxPercent int, clk *clock, obs *observer) (*upstream.Cluster, []string) {
	as := addrs(n)
	spec := static(as)
	spec.OutlierDetection = &config.OutlierDetection{
		Consecutive5xx:     3,
		BaseEjectionTime:   dur(10 * time.Second),
		MaxEjectionPercent: maxPercent,
	}
	return newCluster(t, spec, upstream.Options{Now: clk.Now, Observer: obs}), as
}

func TestOutlierCountsConsecutiveFailures(t *testing.T) {
	S, F5, GW, CF, RS, TO, CX := upstream.Success, upstream.Status5xx, upstream.GatewayError,
		upstream.ConnectFailure, upstream.Reset, upstream.Timeout, upstream.Canceled
	tests := []struct {
		name    string
		results []upstream.Result
		ejected bool
	}{
		{"three 5xx", []upstream.Result{F5, F5, F5}, true},
		{"mixed failures", []upstream.Result{GW, CF, RS}, true},
		{"timeouts", []upstream.Result{TO, TO, TO}, true},
		{"two failures", []upstream.Result{F5, GW}, false},
		{"a success resets the count", []upstream.Result{F5, F5, S, F5, F5}, false},
		{"cancellations are not failures", []upstream.Result{CX, CX, CX, CX}, false},
		{"cancellations do not reset either", []upstream.Result{F5, CX, F5, CX, F5}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, as := outlierCluster(t, 4, 50, newClock(), &observer{})
			ep := endpoints(t, c)[as[0]]
			for _, r := range tt.results {
				ep.Begin()
				ep.End(r)
			}
			if got := status(c, as[0]).Ejected; got != tt.ejected {
				t.Fatalf("ejected = %v, want %v", got, tt.ejected)
			}
		})
	}
}

func fail(ep *upstream.Endpoint, n int) {
	for range n {
		ep.Begin()
		ep.End(upstream.GatewayError)
	}
}

func TestOutlierEjectionAndReturn(t *testing.T) {
	clk, obs := newClock(), &observer{}
	c, as := outlierCluster(t, 3, 50, clk, obs)
	eps := endpoints(t, c)
	a, b := eps[as[0]], eps[as[1]]

	neverPicks := func(ep *upstream.Endpoint, when string) {
		t.Helper()
		if got := counts(t, c, 300); got[ep.Addr] != 0 {
			t.Fatalf("%s: ejected %s picked %d times", when, ep.Addr, got[ep.Addr])
		}
	}
	returns := func(ep *upstream.Endpoint, when string) {
		t.Helper()
		eventually(t, ep.Addr+" to return "+when, func() bool { return pick(t, c, nil) == ep })
		if st := status(c, ep.Addr); st.Ejected {
			t.Fatalf("%s: picked but still ejected", when)
		}
	}

	fail(a, 3)
	st := status(c, a.Addr)
	if !st.Ejected || !st.EjectedUntil.Equal(clk.Now().Add(10*time.Second)) {
		t.Fatalf("after 3 failures: %+v, want ejected for 10s", st)
	}
	neverPicks(a, "just ejected")

	// 50% of 3 endpoints is 1: a second ejection is refused.
	fail(b, 3)
	if status(c, b.Addr).Ejected {
		t.Fatal("second endpoint ejected beyond maxEjectionPercent")
	}
	if _, ejected, _ := obs.snapshot(); !slices.Equal(ejected, []string{a.Addr}) {
		t.Fatalf("observer saw ejections %v, want [%s]", ejected, a.Addr)
	}

	clk.Advance(9 * time.Second)
	neverPicks(a, "9s into a 10s ejection")
	clk.Advance(time.Second)
	returns(a, "after 10s")

	// The second ejection lasts twice as long.
	fail(a, 3)
	if st := status(c, a.Addr); !st.EjectedUntil.Equal(clk.Now().Add(20 * time.Second)) {
		t.Fatalf("second ejection until %v, want now+20s", st.EjectedUntil)
	}
	clk.Advance(10 * time.Second)
	neverPicks(a, "10s into a 20s ejection")
	if !status(c, a.Addr).Ejected {
		t.Fatal("returned after 10s of a 20s ejection")
	}
	clk.Advance(10 * time.Second)
	returns(a, "after 20s")

	// Now the budget is free again, b can go.
	fail(b, 3)
	if !status(c, b.Addr).Ejected {
		t.Fatal("b not ejected with no other endpoint out")
	}
	if _, ejected, _ := obs.snapshot(); len(ejected) != 3 {
		t.Fatalf("observer saw %v, want three ejections", ejected)
	}
}

func TestOutlierMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		n, percent, failing, wantEjected int
	}{
		{n: 1, percent: 50, failing: 1, wantEjected: 0}, // never below MaxEjectionPercent
		{n: 4, percent: 50, failing: 4, wantEjected: 2},
		{n: 10, percent: 30, failing: 10, wantEjected: 3},
		{n: 2, percent: 100, failing: 2, wantEjected: 2},
	}
	for _, tt := range tests {
		c, as := outlierCluster(t, tt.n, tt.percent, newClock(), &observer{})
		eps := endpoints(t, c)
		for _, a := range as[:tt.failing] {
			fail(eps[a], 3)
		}
		got := 0
		for _, s := range c.Endpoints() {
			if s.Ejected {
				got++
			}
		}
		if got != tt.wantEjected {
			t.Errorf("%d endpoints, %d%%, %d failing: %d ejected, want %d", tt.n, tt.percent, tt.failing, got, tt.wantEjected)
		}
		if got == tt.n {
			if _, err := c.Pick(nil, netip.Addr{}, nil); !errors.Is(err, upstream.ErrNoHealthyEndpoint) {
				t.Errorf("all ejected: Pick = %v, want ErrNoHealthyEndpoint", err)
			}
		}
	}
}

// When every endpoint is out, the first Pick after an ejection ends gets the
// endpoint back at once instead of failing.
func TestOutlierReturnWhenAllEjected(t *testing.T) {
	clk := newClock()
	c, as := outlierCluster(t, 1, 100, clk, &observer{})
	fail(endpoints(t, c)[as[0]], 3)
	if _, err := c.Pick(nil, netip.Addr{}, nil); !errors.Is(err, upstream.ErrNoHealthyEndpoint) {
		t.Fatalf("only endpoint ejected: Pick = %v, want ErrNoHealthyEndpoint", err)
	}
	clk.Advance(10 * time.Second)
	if ep, err := c.Pick(nil, netip.Addr{}, nil); err != nil || ep.Addr != as[0] {
		t.Fatalf("first Pick after the ejection ended: %v, %v", ep, err)
	}
}
