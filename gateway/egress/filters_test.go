package egress_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	_ "github.com/portcullis/portcullis/gateway/filters/cors"         // type "cors"
	_ "github.com/portcullis/portcullis/gateway/filters/credexchange" // type "credexchange"
	"github.com/portcullis/portcullis/gateway/snapshot"
)

const (
	idOrders   = "spiffe://test/ns/shop/sa/orders"      // allowed out, and the credexchange rule's caller
	idReports  = "spiffe://test/ns/shop/sa/reports"     // allowed out, but no credexchange rule names it
	idIntruder = "spiffe://test/ns/other/sa/intruder"   // not allowed out at all
	partnerKey = "pk-7f3a9c-partner-issued"             // what only the egress holds
	callerKey  = "caller-own-key-must-not-leave"        // what an app tries to send itself
	meshToken  = "Bearer mesh-internal-token-must-stay" // the app's internal credential
)

// TestEgressFiltersInjectCredentials runs the way an app uses the egress: a
// plain http.Client with the egress (mTLS) as its proxy, asking for
// http://localhost:PORT/v1/x. The egress's credexchange filter swaps the app's
// own credentials for the partner's API key from a file, and the egress opens
// TLS to the partner (an httptest TLS server that checks the key). The host is
// "localhost" because the gateway resolves names with the system resolver and
// a test cannot add api.partner.test to it; it is still a name, resolved,
// checked (allowPrivateAddresses) and verified in the partner's certificate.
func TestEgressFiltersInjectCredentials(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	mustWrite(t, caFile, ca.pem)
	srvCert, srvKey := writePEM(t, dir, "egress", ca.issue(t, ""))
	keyFile := filepath.Join(dir, "partner-key")
	mustWrite(t, keyFile, []byte(partnerKey+"\n"))

	var hits atomic.Int64
	partner := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		keys, auth := r.Header.Values("X-API-Key"), r.Header.Get("Authorization")
		if len(keys) != 1 || keys[0] != partnerKey || auth != "" {
			w.WriteHeader(http.StatusUnauthorized)
		}
		fmt.Fprintf(w, "path=%s tls=%v keys=%q auth=%q", r.URL.Path, r.TLS != nil, keys, auth)
	}))
	partner.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "")}}
	partner.StartTLS()
	defer partner.Close()
	partnerPort := port(t, partner.URL)

	cfg := fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: egress}
spec:
  address: 127.0.0.1:0
  tls:
    certificates: [{certFile: %q, keyFile: %q}]
    clientCAFile: %q
  egress:
    filters:
      - type: credexchange
        config:
          requireMatch: true
          credentials:
            - match: {callers: [%q], hosts: [localhost]}
              inject: {apiKey: {header: X-API-Key, valueFile: %q}}
---
apiVersion: portcullis.dev/v1alpha1
kind: ExternalService
metadata: {name: partner}
spec: {hosts: [localhost], ports: [%s], originateTLS: true, caFile: %q, allowPrivateAddresses: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: EgressPolicy
metadata: {name: shop-to-partner}
spec: {from: ["spiffe://test/ns/shop/*"], to: [partner]}
`, srvCert, srvKey, caFile, idOrders, keyFile, partnerPort, caFile)
	g, logs := startEgress(t, cfg)
	proxyURL := &url.URL{Scheme: "https", Host: g.ListenerAddr("default/egress")}

	// app is a plain client of the egress, identified by its mesh certificate.
	app := func(id string) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		tr := &http.Transport{
			Proxy:             http.ProxyURL(proxyURL),
			TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{ca.issue(t, id)}},
			DisableKeepAlives: true,
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	call := func(t *testing.T, c *http.Client, target string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-API-Key", callerKey)
		req.Header.Set("Authorization", meshToken)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	plainTarget := "http://localhost:" + partnerPort + "/v1/x"
	localReplies := func(reason string) float64 {
		return counterValue(t, g, "portcullis_local_replies_total", map[string]string{"listener": "default/egress", "reason": reason})
	}

	t.Run("absolute-form gets the partner key, not the caller's", func(t *testing.T) {
		resp, body := call(t, app(idOrders), plainTarget)
		want := fmt.Sprintf("path=/v1/x tls=true keys=[%q] auth=\"\"", partnerKey)
		if resp.StatusCode != http.StatusOK || body != want {
			t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, want)
		}
	})

	t.Run("a filter's refusal is answered and counted by the core", func(t *testing.T) {
		before, hitsBefore := localReplies("credexchange_no_match"), hits.Load()
		resp, body := call(t, app(idReports), plainTarget)
		// writeError's form: status line words and the reason, as on a route.
		if resp.StatusCode != http.StatusForbidden || body != "403 Forbidden: credexchange_no_match\n" ||
			resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("got %d %q (%s), want the core's 403 credexchange_no_match", resp.StatusCode, body, resp.Header.Get("Content-Type"))
		}
		if n := localReplies("credexchange_no_match"); n != before+1 {
			t.Fatalf("local replies credexchange_no_match = %v, want %v", n, before+1)
		}
		if hits.Load() != hitsBefore {
			t.Fatal("a refused request reached the partner")
		}
	})

	t.Run("a denied caller never reaches the filter", func(t *testing.T) {
		// requireMatch would answer credexchange_no_match had the filter run
		// before the policy: the reason tells which one refused.
		before, hitsBefore := localReplies("credexchange_no_match"), hits.Load()
		resp, body := call(t, app(idIntruder), plainTarget)
		wantRefusal(t, resp, body, http.StatusForbidden, "egress_caller_denied")
		if n := localReplies("credexchange_no_match"); n != before {
			t.Fatalf("the filter ran for a caller the policy denied (%v refusals, want %v)", n, before)
		}
		if n := localReplies("egress_caller_denied"); n < 1 {
			t.Fatalf("local replies egress_caller_denied = %v", n)
		}
		if hits.Load() != hitsBefore {
			t.Fatal("a denied caller reached the partner")
		}
	})

	t.Run("CONNECT carries the caller's TLS untouched: no credential injected", func(t *testing.T) {
		// https:// makes the client open a CONNECT tunnel and run TLS to the
		// partner itself: the egress sees neither headers nor path, so the
		// partner gets exactly what the app sent, and refuses it.
		hitsBefore := hits.Load()
		resp, body := call(t, app(idOrders), "https://localhost:"+partnerPort+"/v1/x")
		want := fmt.Sprintf("path=/v1/x tls=true keys=[%q] auth=%q", callerKey, meshToken)
		if resp.StatusCode != http.StatusUnauthorized || body != want {
			t.Fatalf("got %d %q, want 401 %q", resp.StatusCode, body, want)
		}
		if hits.Load() != hitsBefore+1 {
			t.Fatal("the tunnelled request did not reach the partner")
		}
	})

	t.Run("no secret in the logs", func(t *testing.T) {
		l := logs.String()
		if !strings.Contains(l, "credexchange_no_match") {
			t.Fatalf("the filter's refusal is not in the log:\n%s", l)
		}
		for _, secret := range []string{partnerKey, callerKey, "mesh-internal-token"} {
			if strings.Contains(l, secret) {
				t.Errorf("%q reached the log", secret)
			}
		}
	})
}

// Errors in spec.egress.filters name the field: a missing type is refused by
// validation, an unknown type and a filter's own config error when the
// snapshot is compiled, all at spec.egress.filters[i].
func TestEgressFilterConfigErrors(t *testing.T) {
	listener := func(filters string) string {
		return "apiVersion: portcullis.dev/v1alpha1\nkind: Listener\nmetadata: {name: egress}\nspec:\n  address: 127.0.0.1:0\n  egress:\n    filters:\n" + filters
	}
	cases := []struct {
		name    string
		filters string
		want    []string
	}{
		{"type missing", "      - {type: cors}\n      - config: {}\n", []string{"f.yaml:9:", "Listener default/egress", "spec.egress.filters[1].type", "required"}},
		{"unknown type", "      - {type: credexchang}\n", []string{"f.yaml:8:", "spec.egress.filters[0].type", `unknown filter type "credexchang"`}},
		{"bad config", "      - type: credexchange\n        config: {credentials: [], bogus: 1}\n", []string{"f.yaml:", "spec.egress.filters[0].config", "bogus"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set, err := config.Parse("f.yaml", []byte(listener(c.filters)))
			if err == nil {
				snap, cerr := snapshot.Compile(set, "v1", nil, snapshot.Deps{})
				if cerr == nil {
					snap.Close()
					t.Fatal("accepted")
				}
				err = cerr
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not say %q", err, w)
				}
			}
		})
	}
}
