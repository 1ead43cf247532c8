package egress_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/egress"
	"github.com/portcullis/portcullis/gateway/filter"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct{ addr, class string }{
		{"127.0.0.1", egress.ClassLoopback},
		{"::1", egress.ClassLoopback},
		{"::ffff:127.0.0.1", egress.ClassLoopback},
		{"169.254.169.254", egress.ClassLinkLocal},
		{"::ffff:169.254.169.254", egress.ClassLinkLocal},
		{"fe80::1", egress.ClassLinkLocal},
		{"10.1.2.3", egress.ClassPrivate},
		{"172.16.0.1", egress.ClassPrivate},
		{"192.168.1.1", egress.ClassPrivate},
		{"fd00::1", egress.ClassPrivate},
		{"100.64.0.1", egress.ClassSharedCGNAT},
		{"100.127.255.254", egress.ClassSharedCGNAT},
		{"224.0.0.1", egress.ClassMulticast},
		{"ff02::1", egress.ClassMulticast},
		{"0.0.0.0", egress.ClassUnspecified},
		{"::", egress.ClassUnspecified},
		{"0.1.2.3", egress.ClassReserved},
		{"255.255.255.255", egress.ClassReserved},
		{"64:ff9b::7f00:1", egress.ClassLoopback}, // NAT64 form of 127.0.0.1
		{"2002:a00:1::", egress.ClassPrivate},     // 6to4 form of 10.0.0.1
		{"::a9fe:a9fe", egress.ClassLinkLocal},    // IPv4-compatible 169.254.169.254
		{"8.8.8.8", ""},
		{"100.128.0.1", ""},
		{"198.51.100.7", ""},
		{"2606:4700::1111", ""},
		{"64:ff9b::808:808", ""}, // NAT64 form of 8.8.8.8
	} {
		if got := egress.Classify(netip.MustParseAddr(c.addr)); got != c.class {
			t.Errorf("Classify(%s) = %q, want %q", c.addr, got, c.class)
		}
	}
}

// fakeNet is an injected resolver and dialer: answers[i] is the answer of the
// i-th lookup (the last one repeats), and dials to an address in routes go to
// the real server given there.
type fakeNet struct {
	mu      sync.Mutex
	answers [][]netip.Addr
	lookups []string
	dialled []string
	routes  map[string]string
}

func (f *fakeNet) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := min(len(f.lookups), len(f.answers)-1)
	f.lookups = append(f.lookups, host)
	return f.answers[i], nil
}

func (f *fakeNet) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.dialled = append(f.dialled, addr)
	real, ok := f.routes[addr]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("fakeNet: nothing at %s", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, real)
}

func (f *fakeNet) counts() (lookups, dials int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.lookups), len(f.dialled)
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// newHandler builds an egress handler for the clear-text listener of cfg's
// namespace, on the fake network.
func newHandler(t *testing.T, resources string, fn *fakeNet) *egress.Handler {
	t.Helper()
	cfg := "apiVersion: portcullis.dev/v1alpha1\nkind: Listener\nmetadata: {name: out}\nspec: {address: 127.0.0.1:0, egress: {}}\n" + resources
	set, err := config.Parse("test.yaml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	h, err := egress.New(set, set.Listeners[0], egress.WithResolver(fn), egress.WithDialer(fn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func serve(h *egress.Handler, target string) (*httptest.ResponseRecorder, error) {
	rec := httptest.NewRecorder()
	return rec, h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
}

func wantReason(t *testing.T, err error, status int, reason string) {
	t.Helper()
	var fe *filter.Error
	if !errors.As(err, &fe) || fe.Status != status || fe.Reason != reason {
		t.Fatalf("got %v, want %d %s", err, status, reason)
	}
}

const apiService = `---
apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: api}
spec: {hosts: ["api.example.com"], ports: [80]%s}
---
apiVersion: portcullis.dev/v1alpha1
kind: EgressPolicy
metadata: {name: anyone}
spec: {from: ["*"], to: [api]}
`

// A name whose answer is private, or mixes a public and a private address
// (a rebinding hedge), is refused before any connection is made.
func TestPrivateDNSAnswerRefused(t *testing.T) {
	for _, answer := range [][]netip.Addr{addrs("10.0.0.5"), addrs("198.51.100.7", "127.0.0.1"), addrs("::ffff:169.254.169.254")} {
		fn := &fakeNet{answers: [][]netip.Addr{answer}, routes: map[string]string{}}
		h := newHandler(t, fmt.Sprintf(apiService, ""), fn)
		_, err := serve(h, "http://api.example.com/x")
		wantReason(t, err, http.StatusForbidden, egress.ReasonAddressRefused)
		if l, d := fn.counts(); l != 1 || d != 0 {
			t.Fatalf("answer %v: %d lookups, %d dials; want 1 and 0", answer, l, d)
		}
	}
}

// The address dialled is the one checked: a resolver that answers otherwise
// on a second lookup is asked once, and its first answer is used.
func TestDialsTheCheckedAddressOnce(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s", r.Host)
	}))
	defer backend.Close()
	fn := &fakeNet{
		answers: [][]netip.Addr{addrs("198.51.100.7"), addrs("127.0.0.1")},
		routes:  map[string]string{"198.51.100.7:80": backend.Listener.Addr().String()},
	}
	h := newHandler(t, fmt.Sprintf(apiService, ""), fn)
	rec, err := serve(h, "http://api.example.com/x")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || rec.Body.String() != "host=api.example.com" {
		t.Fatalf("got %d %q", rec.Code, rec.Body)
	}
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if len(fn.lookups) != 1 || len(fn.dialled) != 1 || fn.dialled[0] != "198.51.100.7:80" {
		t.Fatalf("lookups %v, dials %v: want one lookup and a dial of the first answer", fn.lookups, fn.dialled)
	}
}

// TLS origination sends the requested name as SNI and verifies the
// certificate for it against the service's caFile.
func TestOriginateTLSVerifiesTheName(t *testing.T) {
	backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "sni=%s", r.TLS.ServerName)
	}))
	defer backend.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	mustWrite(t, caFile, pemOf(backend.Certificate()))
	fn := &fakeNet{answers: [][]netip.Addr{addrs("127.0.0.1")}, routes: map[string]string{"127.0.0.1:443": backend.Listener.Addr().String()}}
	// httptest's certificate names example.com, not example.net.
	h := newHandler(t, fmt.Sprintf(`---
apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: good}
spec: {hosts: ["example.com"], ports: [443], originateTLS: true, caFile: %q, allowPrivateAddresses: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: wrong-name}
spec: {hosts: ["example.net"], ports: [443], originateTLS: true, caFile: %q, allowPrivateAddresses: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: EgressPolicy
metadata: {name: anyone}
spec: {from: ["*"], to: [good, wrong-name]}
`, caFile, caFile), fn)
	rec, err := serve(h, "http://example.com/x")
	if err != nil || rec.Code != http.StatusOK || rec.Body.String() != "sni=example.com" {
		t.Fatalf("originated: %v %d %q", err, rec.Code, rec.Body)
	}
	_, err = serve(h, "http://example.net/x")
	wantReason(t, err, http.StatusBadGateway, egress.ReasonTLSFailed)
}

func TestCatalog(t *testing.T) {
	set, err := config.Parse("t.yaml", []byte(`apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: wild}
spec: {hosts: ["*.example.com"], ports: [443, 80]}
---
apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: exact}
spec: {hosts: ["api.example.com"], ports: [443], originateTLS: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: EgressPolicy
metadata: {name: shop}
spec: {from: ["spiffe://corp/ns/shop/*"], to: [exact], methods: [GET, CONNECT]}
---
apiVersion: portcullis.dev/v1alpha1
kind: EgressPolicy
metadata: {name: trial}
spec: {from: ["spiffe://corp/ns/ops/sa/cron"], to: [wild], paths: [/status], mode: report}
`))
	if err != nil {
		t.Fatal(err)
	}
	c := egress.NewCatalog(set, "default")
	for _, m := range []struct {
		host     string
		port     int
		svc      string
		wantPort int
	}{
		{"api.example.com", 443, "default/exact", 443},
		{"API.Example.com.", 0, "default/exact", 443}, // originateTLS: an HTTP request's default port is 443
		{"api.example.com", 80, "default/wild", 80},
		{"www.example.com", 0, "default/wild", 80},
		{"a.b.example.com", 443, "", 0},
		{"example.com", 443, "", 0},
		{"www.example.com", 8443, "", 0},
	} {
		s, p, ok := c.Match(m.host, m.port)
		got := ""
		if ok {
			got = s.Name
		}
		if got != m.svc || p != m.wantPort {
			t.Errorf("Match(%s, %d) = %q %d, want %q %d", m.host, m.port, got, p, m.svc, m.wantPort)
		}
	}
	exact, _, _ := c.Match("api.example.com", 443)
	wild, _, _ := c.Match("www.example.com", 80)
	for _, d := range []struct {
		caller, method, path string
		svc                  *egress.Service
		result, reason       string
	}{
		{"spiffe://corp/ns/shop/sa/web", "GET", "/x", exact, egress.Allow, ""},
		{"spiffe://corp/ns/shop/sa/web", "CONNECT", "", exact, egress.Allow, ""},
		{"spiffe://corp/ns/shop/sa/web", "POST", "/x", exact, egress.Deny, egress.ReasonOperationDenied},
		{"spiffe://corp/ns/shop", "GET", "/x", exact, egress.Deny, egress.ReasonCallerDenied}, // the prefix itself is not under it
		{"spiffe://corp/ns/shopping/sa/x", "GET", "/x", exact, egress.Deny, egress.ReasonCallerDenied},
		{"", "GET", "/x", exact, egress.Deny, egress.ReasonCallerDenied},
		{"spiffe://corp/ns/ops/sa/cron", "GET", "/status/db", wild, egress.Allow, ""},
		{"spiffe://corp/ns/ops/sa/cron", "GET", "/admin", wild, egress.Report, egress.ReasonOperationDenied},
		{"spiffe://corp/ns/ops/sa/cron", "CONNECT", "", wild, egress.Report, egress.ReasonOperationDenied}, // paths hide in a tunnel
		{"spiffe://corp/ns/ops/sa/other", "GET", "/status", wild, egress.Deny, egress.ReasonCallerDenied},  // report never opens to unnamed callers
	} {
		got := c.Decide(d.caller, d.svc, d.method, d.path)
		if got.Result != d.result || got.Reason != d.reason {
			t.Errorf("Decide(%q, %s, %s %s) = %+v, want %s %s", d.caller, d.svc.Name, d.method, d.path, got, d.result, d.reason)
		}
	}
}

func TestEgressConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"kind: EgressPolicy\nmetadata: {name: p}\nspec: {from: [\"spiffe://corp/*/x\"], to: [s]}\n", "spec.from[0]"},
		{"kind: EgressPolicy\nmetadata: {name: p}\nspec: {from: [\"corp/ns\"], to: [s]}\n", "spec.from[0]"},
		{"kind: EgressPolicy\nmetadata: {name: p}\nspec: {from: [\"*\"], to: [s], paths: [v1]}\n", "spec.paths[0]"},
		{"kind: EgressPolicy\nmetadata: {name: p}\nspec: {from: [\"*\"], to: [s], methods: [get]}\n", "spec.methods[0]"},
		{"kind: Listener\nmetadata: {name: l}\nspec: {address: 127.0.0.1:0, egress: {connectTimeout: 5m}}\n", "spec.egress.connectTimeout"},
		{"kind: Listener\nmetadata: {name: l}\nspec: {address: 127.0.0.1:0, egress: {}}\n---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {listeners: [l], rules: [{directResponse: {status: 200}}]}\n", "egress listener"},
	} {
		cfg := "apiVersion: portcullis.dev/v1alpha1\nkind: ExternalService\nmetadata: {name: s}\nspec: {hosts: [a.example.com], ports: [443]}\n---\napiVersion: portcullis.dev/v1alpha1\n" + c.yaml
		_, err := config.Parse("t.yaml", []byte(cfg))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error naming %s", c.yaml, err, c.want)
		}
	}
}
