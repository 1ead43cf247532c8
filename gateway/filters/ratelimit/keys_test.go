package ratelimit_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filters/ratelimit"
)

// identity attaches an authenticated caller, as the jwt filter would.
func identity(issuer, subject string, claims map[string]any) func(*http.Request) {
	return func(r *http.Request) {
		*r = *filter.WithIdentity(r, &filter.Identity{Source: "jwt", Issuer: issuer, Subject: subject, Claims: claims})
	}
}

func mods(m ...func(*http.Request)) []func(*http.Request) { return m }

// keyStep is one request and the status it must get; every config of these tests
// has burst 1, so 200 says "a bucket of its own so far" and 429 "a bucket already
// used by an earlier step".
type keyStep struct {
	mods   []func(*http.Request)
	status int
}

func runKeySteps(t *testing.T, cfg string, steps []keyStep) {
	t.Helper()
	h, _, _, _ := limited(t, cfg)
	for i, s := range steps {
		if status, _ := serve(t, h, req(s.mods...)); status != s.status {
			t.Errorf("step %d: status %d, want %d", i+1, status, s.status)
		}
	}
}

// TestIdentityKeys: which authenticated callers share a bucket with subject and
// claim keys, and what happens to requests without an identity.
func TestIdentityKeys(t *testing.T) {
	const subjectCfg = "requestsPerSecond: 1\nburst: 1\nkey: {subject: {}}"
	const claimCfg = "requestsPerSecond: 1\nburst: 1\nkey: {claim: tenant.id}"
	alice := identity("https://login.example.com", "alice", nil)
	bob := identity("https://login.example.com", "bob", nil)
	tenant := func(iss, sub string, id any) func(*http.Request) {
		return identity(iss, sub, map[string]any{"tenant": map[string]any{"id": id}})
	}
	tests := []struct {
		name  string
		cfg   string
		steps []keyStep
	}{
		{"two subjects have their own buckets, one subject shares across requests", subjectCfg, []keyStep{
			{mods(alice, client("192.0.2.1")), 200},
			{mods(bob, client("192.0.2.1")), 200},
			{mods(alice, client("192.0.2.2")), 429}, // another address, same caller
			{mods(bob), 429},
		}},
		{"the same subject from two issuers is two callers", subjectCfg, []keyStep{
			{mods(identity("https://a.example.com", "42", nil)), 200},
			{mods(identity("https://b.example.com", "42", nil)), 200},
			{mods(identity("https://a.example.com", "42", nil)), 429},
		}},
		{"issuer and subject cannot be shifted into each other", subjectCfg, []keyStep{
			{mods(identity("https://a.example.com/x", "y", nil)), 200},
			{mods(identity("https://a.example.com/", "xy", nil)), 200},
		}},
		{"a claim key groups callers by the claim's value", claimCfg, []keyStep{
			{mods(tenant("https://login.example.com", "alice", "t1")), 200},
			{mods(tenant("https://login.example.com", "bob", "t1")), 429},
			{mods(tenant("https://login.example.com", "carol", "t2")), 200},
			{mods(tenant("https://other.example.com", "dave", "t1")), 200}, // another issuer's t1
		}},
		{"numeric claim values are keys too", claimCfg, []keyStep{
			{mods(tenant("i", "a", float64(7))), 200},
			{mods(tenant("i", "b", float64(7))), 429},
			{mods(tenant("i", "b", float64(8))), 200},
		}},
		{"missingKey shared: no identity, no claim and an object claim share one bucket", claimCfg, []keyStep{
			{mods(client("192.0.2.1")), 200},
			{mods(client("192.0.2.2")), 429},
			{mods(alice), 429},
			{mods(tenant("i", "a", map[string]any{"nested": "x"})), 429},
			{mods(tenant("i", "a", "t1")), 200},
		}},
		{"missingKey shared with a subject key", subjectCfg, []keyStep{
			{mods(identity("i", "", nil)), 200},
			{mods(), 429},
			{mods(alice), 200},
		}},
		{"missingKey refuse: 401 without identity, 403 without the claim", claimCfg + "\nmissingKey: refuse", []keyStep{
			{mods(), 401},
			{mods(alice), 403},
			{mods(tenant("i", "a", "")), 403},
			{mods(tenant("i", "a", "t1")), 200},
			{mods(), 401}, // refusals do not use the shared bucket either
		}},
		{"missingKey refuse with a subject key", subjectCfg + "\nmissingKey: refuse", []keyStep{
			{mods(), 401},
			{mods(identity("i", "", nil)), 403},
			{mods(alice), 200},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runKeySteps(t, tt.cfg, tt.steps) })
	}
}

// TestMissingIdentityChallenge: the 401 of missingKey: refuse carries a Bearer
// challenge (RFC 9110 §15.5.2), unless an earlier filter already set one, and the
// reason names the cause.
func TestMissingIdentityChallenge(t *testing.T) {
	h, _, _, calls := limited(t, "requestsPerSecond: 1\nburst: 1\nkey: {subject: {}}\nmissingKey: refuse")
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, req())
	if s, reason := filter.StatusOf(err); s != 401 || reason != ratelimit.ReasonUnauthenticated {
		t.Errorf("no identity: %d %s, want 401 %s", s, reason, ratelimit.ReasonUnauthenticated)
	}
	if got := rec.Header().Get("WWW-Authenticate"); got != "Bearer" {
		t.Errorf("WWW-Authenticate %q, want Bearer", got)
	}
	rec = httptest.NewRecorder()
	rec.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
	_ = h.ServeHTTP(rec, req())
	if got := rec.Header().Values("WWW-Authenticate"); len(got) != 1 || got[0] != `Bearer realm="api"` {
		t.Errorf("WWW-Authenticate %q, want the earlier filter's challenge alone", got)
	}
	err = h.ServeHTTP(httptest.NewRecorder(), req(identity("i", "", nil)))
	if s, reason := filter.StatusOf(err); s != 403 || reason != ratelimit.ReasonMissingClaim {
		t.Errorf("identity without subject: %d %s, want 403 %s", s, reason, ratelimit.ReasonMissingClaim)
	}
	if calls.Load() != 0 {
		t.Errorf("%d refused requests reached the upstream", calls.Load())
	}
}

// TestPlanClaim: a claim of the caller picks the plan; values that name no plan,
// non-string claims and requests without identity get the top-level rate.
func TestPlanClaim(t *testing.T) {
	const cfg = `
requestsPerSecond: 1
burst: 1
key: {subject: {}}
planClaim: plan
plans:
  pro: {requestsPerSecond: 10, burst: 3}
  free: {requestsPerSecond: 1, burst: 2}`
	withPlan := func(sub string, plan any) func(*http.Request) {
		return identity("https://login.example.com", sub, map[string]any{"plan": plan})
	}
	tests := []struct {
		name  string
		mods  []func(*http.Request)
		pass  int
		limit string
	}{
		{"pro", mods(withPlan("a", "pro")), 3, "3"},
		{"free", mods(withPlan("b", "free")), 2, "2"},
		{"unknown plan value", mods(withPlan("c", "enterprise")), 1, "1"},
		{"plan claim as a list", mods(withPlan("d", []any{"pro"})), 1, "1"},
		{"no plan claim", mods(identity("https://login.example.com", "e", nil)), 1, "1"},
		{"no identity", mods(client("192.0.2.1")), 1, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _, _, _ := limited(t, cfg)
			pass, limit := 0, ""
			for range 6 {
				status, rec := serve(t, h, req(tt.mods...))
				if status == 200 {
					pass++
				}
				limit = rec.Result().Header.Get("RateLimit-Limit")
			}
			if pass != tt.pass || limit != tt.limit {
				t.Errorf("%d of 6 passed with RateLimit-Limit %q, want %d with %q", pass, limit, tt.pass, tt.limit)
			}
		})
	}

	t.Run("an upgraded caller's bucket takes the new rate and keeps its tokens", func(t *testing.T) {
		h, _, c, _ := limited(t, cfg)
		for i, s := range []struct {
			advance time.Duration
			plan    string
			status  int
			limit   string
		}{
			{0, "free", 200, "2"},
			{0, "free", 200, "2"},
			{0, "free", 429, "2"},
			{0, "pro", 429, "3"},                      // the empty bucket stays empty: no fresh burst by upgrading
			{100 * time.Millisecond, "pro", 200, "3"}, // refilled at pro's 10/s, not free's 1/s
			{0, "pro", 429, "3"},
		} {
			c.add(s.advance)
			status, rec := serve(t, h, req(withPlan("a", s.plan)))
			if limit := rec.Result().Header.Get("RateLimit-Limit"); status != s.status || limit != s.limit {
				t.Errorf("request %d (%s): %d with limit %q, want %d with %q", i+1, s.plan, status, limit, s.status, s.limit)
			}
		}
	})
}

// TestAddressGrouping: IPv6 clients share a bucket per /64 by default and IPv4
// clients have one per address; both are configurable.
func TestAddressGrouping(t *testing.T) {
	const base = "requestsPerSecond: 1\nburst: 1"
	tests := []struct {
		name  string
		cfg   string
		steps []keyStep
	}{
		{"IPv6 addresses in one /64 share a bucket, other /64s do not", base, []keyStep{
			{mods(client("2001:db8:0:1::1")), 200},
			{mods(client("2001:db8:0:1:ffff:ffff:ffff:ffff")), 429},
			{mods(client("2001:db8:0:2::1")), 200},
			{mods(client("2001:db8:1:1::1")), 200},
		}},
		{"IPv4 is per address by default", base, []keyStep{
			{mods(client("192.0.2.1")), 200},
			{mods(client("192.0.2.2")), 200},
			{mods(client("::ffff:192.0.2.1")), 429},
		}},
		{"ipv6PrefixLength 128 is per address", base + "\nipv6PrefixLength: 128", []keyStep{
			{mods(client("2001:db8::1")), 200},
			{mods(client("2001:db8::2")), 200},
			{mods(client("2001:db8::1")), 429},
		}},
		{"ipv6PrefixLength 48", base + "\nipv6PrefixLength: 48", []keyStep{
			{mods(client("2001:db8:0:1::1")), 200},
			{mods(client("2001:db8:0:ffff::1")), 429},
			{mods(client("2001:db8:1::1")), 200},
		}},
		{"ipv4PrefixLength 24", base + "\nipv4PrefixLength: 24", []keyStep{
			{mods(client("192.0.2.1")), 200},
			{mods(client("192.0.2.254")), 429},
			{mods(client("::ffff:192.0.2.7")), 429},
			{mods(client("192.0.3.1")), 200},
		}},
		{"the families never share: ::/64 and IPv4", base, []keyStep{
			{mods(client("::1")), 200},
			{mods(client("0.0.0.1")), 200},
			{mods(client("::2")), 429},
		}},
		{"a peer address outside the core is grouped too", base, []keyStep{
			{mods(peer("[2001:db8:0:5::1]:1234")), 200},
			{mods(peer("[2001:db8:0:5::2]:1234")), 429},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runKeySteps(t, tt.cfg, tt.steps) })
	}
}

// TestOneSlash64IsOneKey: a client rotating through the addresses of its /64
// neither escapes its bucket nor grows the table.
func TestOneSlash64IsOneKey(t *testing.T) {
	h, f, _, calls := limited(t, "requestsPerSecond: 1\nburst: 5\nmaxKeys: 1000")
	for i := range 2000 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 9, 8: byte(i >> 8), 9: byte(i), 15: 1})
		_, _ = serve(t, h, req(client(a.String())))
	}
	if calls.Load() != 5 {
		t.Errorf("%d requests passed, want the burst of one bucket (5)", calls.Load())
	}
	if n := ratelimit.Keys(f); n != 1 {
		t.Errorf("the table holds %d keys, want 1", n)
	}
}
