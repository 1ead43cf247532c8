package upstream_test

import (
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/upstream"
)

func secretFile(t *testing.T, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sticky.key")
	if err := os.WriteFile(p, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const secret32 = "0123456789abcdef0123456789abcdef"

func stickyCluster(t *testing.T, name, secretPath string, ttl time.Duration, opts upstream.Options) (*upstream.Cluster, []string) {
	t.Helper()
	as := addrs(3)
	spec := static(as)
	spec.LoadBalancer.StickyCookie = &config.StickyCookie{Name: "pc-route", SecretFile: secretPath}
	if ttl > 0 {
		spec.LoadBalancer.StickyCookie.TTL = dur(ttl)
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	c, err := upstream.New(name, spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, as
}

func withCookie(ck *http.Cookie) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	req.Header.Set("Cookie", "other=1; "+ck.Name+"="+ck.Value+"; more=2")
	return req
}

// distinct counts the endpoints n picks of req reach.
func distinct(t *testing.T, c *upstream.Cluster, req *http.Request, n int) map[string]int {
	t.Helper()
	m := map[string]int{}
	for range n {
		m[pick(t, c, req).Addr]++
	}
	return m
}

func TestStickyCookieRoundTrip(t *testing.T) {
	c, _ := stickyCluster(t, "web", secretFile(t, secret32), 0, upstream.Options{})
	plain, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	ep := pick(t, c, plain)
	ck := c.StickyCookie(ep, plain)
	if ck == nil {
		t.Fatal("no cookie for a request without one")
	}
	if ck.Name != "pc-route" || ck.Path != "/" || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure || ck.MaxAge != 0 {
		t.Fatalf("cookie attributes: %+v", ck)
	}
	if strings.Contains(ck.Value, "10.0") || strings.Contains(ck.String(), ep.Addr) {
		t.Fatalf("cookie %q reveals the endpoint address", ck.Value)
	}

	req := withCookie(ck)
	if got := distinct(t, c, req, 100); got[ep.Addr] != 100 {
		t.Fatalf("with the cookie, picks went to %v, want all to %s", got, ep.Addr)
	}
	if again := c.StickyCookie(ep, req); again != nil {
		t.Fatalf("request already carries a valid cookie for %s, got another: %v", ep.Addr, again)
	}
	// Sent elsewhere (say ep is excluded on a retry): the client is re-pinned.
	other, err := c.Pick(req, netip.Addr{}, ep)
	if err != nil || other == ep {
		t.Fatalf("Pick excluding the sticky endpoint: %v, %v", other, err)
	}
	if c.StickyCookie(other, req) == nil {
		t.Fatal("no new cookie for a request pinned to another endpoint")
	}
	tlsReq := withCookie(&http.Cookie{Name: "unrelated", Value: "x"})
	tlsReq.TLS = &tls.ConnectionState{}
	if ck := c.StickyCookie(ep, tlsReq); ck == nil || !ck.Secure {
		t.Fatalf("cookie over TLS: %+v, want Secure", ck)
	}
	// Without stickyCookie in the spec there is never a cookie.
	plainCluster := newCluster(t, static(addrs(2)), upstream.Options{})
	if ck := plainCluster.StickyCookie(pick(t, plainCluster, nil), plain); ck != nil {
		t.Fatalf("cluster without stickyCookie set %v", ck)
	}
}

func TestStickyCookieForgeriesIgnored(t *testing.T) {
	path := secretFile(t, secret32)
	c, _ := stickyCluster(t, "web", path, 0, upstream.Options{})
	ep := pick(t, c, nil)
	good := c.StickyCookie(ep, nil).Value

	// Valid cookies, but from elsewhere: another cluster with the same secret,
	// and a cluster of the same name with another secret.
	sibling, _ := stickyCluster(t, "api", path, 0, upstream.Options{})
	fromSibling := sibling.StickyCookie(pick(t, sibling, nil), nil).Value
	stranger, _ := stickyCluster(t, "web", secretFile(t, strings.Repeat("z", 40)), 0, upstream.Options{})
	fromStranger := stranger.StickyCookie(pick(t, stranger, nil), nil).Value

	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flipped := append([]byte(nil), raw...)
	flipped[0] ^= 1 // another endpoint id, same tag
	tagFlipped := append([]byte(nil), raw...)
	tagFlipped[31] ^= 1

	tests := []struct{ name, value string }{
		{"id changed", base64.RawURLEncoding.EncodeToString(flipped)},
		{"tag changed", base64.RawURLEncoding.EncodeToString(tagFlipped)},
		{"truncated", good[:len(good)-1]},
		{"extended", good + "A"},
		{"not base64", strings.Repeat("!", len(good))},
		{"address in clear", ep.Addr},
		{"empty", ""},
		{"other cluster, same secret", fromSibling},
		{"same cluster name, other secret", fromStranger},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := withCookie(&http.Cookie{Name: "pc-route", Value: tt.value})
			if got := distinct(t, c, req, 30); len(got) != 3 {
				t.Fatalf("forged cookie steered picks: %v", got)
			}
			if c.StickyCookie(ep, req) == nil {
				t.Fatal("forged cookie accepted as valid by StickyCookie")
			}
		})
	}
}

func TestStickyCookieExpiry(t *testing.T) {
	clk := newClock()
	c, _ := stickyCluster(t, "web", secretFile(t, secret32), time.Hour, upstream.Options{Now: clk.Now})
	ep := pick(t, c, nil)
	ck := c.StickyCookie(ep, nil)
	if ck.MaxAge != 3600 {
		t.Fatalf("MaxAge %d, want 3600", ck.MaxAge)
	}
	req := withCookie(ck)
	tests := []struct {
		advance       time.Duration
		honoured      bool
		wantNewCookie bool
	}{
		{0, true, false},
		{29 * time.Minute, true, false},
		{2 * time.Minute, true, true}, // past half the TTL: renewed
		{30 * time.Minute, false, true},
	}
	var age time.Duration
	for _, tt := range tests {
		clk.Advance(tt.advance)
		age += tt.advance
		got := distinct(t, c, req, 30)
		if honoured := got[ep.Addr] == 30; honoured != tt.honoured {
			t.Fatalf("%v after issue: honoured = %v, want %v (%v)", age, honoured, tt.honoured, got)
		}
		if renewed := c.StickyCookie(ep, req) != nil; renewed != tt.wantNewCookie {
			t.Fatalf("%v after issue: new cookie = %v, want %v", age, renewed, tt.wantNewCookie)
		}
	}
}

// A valid cookie for an endpoint that is out (ejected here) is not honoured.
func TestStickyCookieUnavailableEndpoint(t *testing.T) {
	as := addrs(3)
	spec := static(as)
	spec.LoadBalancer.StickyCookie = &config.StickyCookie{Name: "pc-route", SecretFile: secretFile(t, secret32)}
	spec.OutlierDetection = &config.OutlierDetection{Consecutive5xx: 1}
	c := newCluster(t, spec, upstream.Options{})
	ep := pick(t, c, nil)
	req := withCookie(c.StickyCookie(ep, nil))
	fail(ep, 1)
	if got := distinct(t, c, req, 30); got[ep.Addr] != 0 {
		t.Fatalf("cookie for an ejected endpoint honoured: %v", got)
	}
}

// Without a secretFile the key is random but one per process, so cookies
// survive a reload that rebuilds the cluster.
func TestStickyCookieProcessKey(t *testing.T) {
	a, _ := stickyCluster(t, "web", "", 0, upstream.Options{})
	b, _ := stickyCluster(t, "web", "", 0, upstream.Options{})
	ep := pick(t, a, nil)
	got := distinct(t, b, withCookie(a.StickyCookie(ep, nil)), 30)
	if got[ep.Addr] != 30 {
		t.Fatalf("cookie for %s from the first cluster not honoured by its reload: %v", ep.Addr, got)
	}
}
