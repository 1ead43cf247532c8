package authz_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	"github.com/portcullis/portcullis/gateway/filters/authz"
)

const idp = "https://id.example.com"

// apiRules is the rule set most tests use.
const apiRules = `realm: api.example.com
rules:
  - name: health
    methods: [GET, HEAD]
    paths: [/healthz]
    public: true
  - paths: [/admin/*]
    deny: true
  - name: read
    methods: [GET, HEAD]
    paths: [/v1/orders/*]
    require:
      scopes: {anyOf: [orders.read, orders.write]}
  - name: write
    methods: [POST, PUT, DELETE]
    paths: [/v1/orders/*]
    require:
      issuers: [https://id.example.com]
      scopes: {allOf: [orders.write]}
      claims: [{name: org.id, values: [acme, globex]}]
  - name: me
    paths: [/v1/me]
    require: {authenticated: true}
  - name: staff
    paths: [/v1/reports/*, /v1/audit]
    require:
      claims: [{name: realm_access.roles, values: [staff]}]
`

func TestDecisions(t *testing.T) {
	ev := &events{}
	f := mustBuild(t, apiRules, ev)
	writer := func(org map[string]any) *filter.Identity {
		c := map[string]any{"scope": "openid orders.write"}
		for k, v := range org {
			c[k] = v
		}
		return caller(idp, c)
	}
	const scopeChallenge = `Bearer realm="api.example.com", error="insufficient_scope", ` +
		`error_description="the token lacks a scope this request requires", scope="orders.read orders.write"`
	tests := []struct {
		name         string
		method, path string
		id           *filter.Identity
		status       int    // 0: passes
		reason       string // of the refusal
		rule         string // named in the event
		challenge    string // exact WWW-Authenticate, "" for none
	}{
		{name: "public anonymous", method: "GET", path: "/healthz"},
		{name: "public head", method: "HEAD", path: "/healthz"},
		{name: "public method not listed", method: "POST", path: "/healthz", status: 403, reason: authz.ReasonNoRule, rule: "default"},
		{name: "public exact only", method: "GET", path: "/healthz/x", status: 403, reason: authz.ReasonNoRule, rule: "default"},
		{name: "deny anonymous", method: "GET", path: "/admin", status: 403, reason: authz.ReasonDeniedByRule, rule: "rules[1]"},
		{name: "deny below", method: "GET", path: "/admin/users/1", id: writer(map[string]any{"org.id": "acme"}),
			status: 403, reason: authz.ReasonDeniedByRule, rule: "rules[1]"},
		{name: "read anonymous", method: "GET", path: "/v1/orders/42", status: 401, reason: authz.ReasonUnauthenticated,
			rule: "rules[2] (read)", challenge: `Bearer realm="api.example.com"`},
		{name: "read with read scope", method: "GET", path: "/v1/orders/42", id: caller(idp, map[string]any{"scope": "orders.read"})},
		{name: "read the base path", method: "GET", path: "/v1/orders", id: caller(idp, map[string]any{"scope": "orders.read"})},
		{name: "read with scp list", method: "GET", path: "/v1/orders/42", id: caller("other", map[string]any{"scp": []any{"x", "orders.write"}})},
		{name: "read without scope", method: "GET", path: "/v1/orders/42", id: caller(idp, map[string]any{"scope": "profile"}),
			status: 403, reason: authz.ReasonInsufficientScope, rule: "rules[2] (read)", challenge: scopeChallenge},
		{name: "read with no claims at all", method: "HEAD", path: "/v1/orders/42", id: caller(idp, nil),
			status: 403, reason: authz.ReasonInsufficientScope, rule: "rules[2] (read)", challenge: scopeChallenge},
		{name: "prefix is segment-aware", method: "GET", path: "/v1/ordersx", id: caller(idp, map[string]any{"scope": "orders.read"}),
			status: 403, reason: authz.ReasonNoRule, rule: "default"},
		{name: "write allowed nested claim", method: "POST", path: "/v1/orders", id: writer(map[string]any{"org": map[string]any{"id": "acme"}})},
		{name: "write allowed dotted claim", method: "DELETE", path: "/v1/orders/7", id: writer(map[string]any{"org.id": "globex"})},
		{name: "write wrong issuer", method: "POST", path: "/v1/orders", id: caller("https://other.example.com",
			map[string]any{"scope": "orders.write", "org.id": "acme"}), status: 403, reason: authz.ReasonIssuer, rule: "rules[3] (write)"},
		{name: "write with read scope only", method: "PUT", path: "/v1/orders/7", id: caller(idp, map[string]any{"scope": "orders.read", "org.id": "acme"}),
			status: 403, reason: authz.ReasonInsufficientScope, rule: "rules[3] (write)",
			challenge: `Bearer realm="api.example.com", error="insufficient_scope", error_description="the token lacks a scope this request requires", scope="orders.write"`},
		{name: "write other org", method: "POST", path: "/v1/orders", id: writer(map[string]any{"org.id": "initech"}),
			status: 403, reason: authz.ReasonClaim, rule: "rules[3] (write)"},
		{name: "write org missing", method: "POST", path: "/v1/orders", id: writer(nil), status: 403, reason: authz.ReasonClaim, rule: "rules[3] (write)"},
		{name: "write org is an object", method: "POST", path: "/v1/orders", id: writer(map[string]any{"org": map[string]any{"id": map[string]any{}}}),
			status: 403, reason: authz.ReasonClaim, rule: "rules[3] (write)"},
		{name: "write anonymous", method: "POST", path: "/v1/orders", status: 401, reason: authz.ReasonUnauthenticated, rule: "rules[3] (write)",
			challenge: `Bearer realm="api.example.com"`},
		{name: "method no rule lists", method: "PATCH", path: "/v1/orders/7", id: writer(map[string]any{"org.id": "acme"}),
			status: 403, reason: authz.ReasonNoRule, rule: "default"},
		{name: "authenticated only", method: "PATCH", path: "/v1/me", id: caller("any", nil)},
		{name: "authenticated only anonymous", method: "GET", path: "/v1/me", status: 401, reason: authz.ReasonUnauthenticated, rule: "rules[4] (me)",
			challenge: `Bearer realm="api.example.com"`},
		{name: "roles array", method: "GET", path: "/v1/reports/q1", id: caller(idp, map[string]any{"realm_access": map[string]any{"roles": []any{"user", "staff"}}})},
		{name: "roles second path", method: "GET", path: "/v1/audit", id: caller(idp, map[string]any{"realm_access": map[string]any{"roles": []any{"staff"}}})},
		{name: "roles without staff", method: "GET", path: "/v1/reports/q1", id: caller(idp, map[string]any{"realm_access": map[string]any{"roles": []any{"user"}}}),
			status: 403, reason: authz.ReasonClaim, rule: "rules[5] (staff)"},
		{name: "default deny anonymous", method: "GET", path: "/", status: 403, reason: authz.ReasonNoRule, rule: "default"},
		{name: "default deny authenticated", method: "GET", path: "/v2/orders", id: writer(map[string]any{"org.id": "acme"}),
			status: 403, reason: authz.ReasonNoRule, rule: "default"},
		{name: "escaped dot segments", method: "GET", path: "/healthz/../admin", status: 400, reason: authz.ReasonAmbiguousPath, rule: "none"},
		{name: "escaped dot segment at end", method: "GET", path: "/v1/orders/.", id: caller(idp, map[string]any{"scope": "orders.read"}),
			status: 400, reason: authz.ReasonAmbiguousPath, rule: "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := serve(t, f, tt.method, tt.path, tt.id)
			got := ev.take()
			if tt.status == 0 {
				if !res.passed || res.status != http.StatusOK || len(got) != 0 {
					t.Fatalf("want the request to pass, got %v, events %v", res, got)
				}
				return
			}
			if res.passed || res.status != tt.status || res.reason != tt.reason || res.challenge != tt.challenge {
				t.Errorf("got %v\nwant status=%d reason=%s challenge=%q", res, tt.status, tt.reason, tt.challenge)
			}
			if len(got) != 1 || got[0].kind != "authz_denied" ||
				!strings.Contains(got[0].detail, "authz: "+tt.reason+" route=default/r#0 rule="+tt.rule+" method="+tt.method+" path="+tt.path) {
				t.Errorf("events %+v", got)
			}
			if tt.id != nil && (len(got) != 1 || !strings.Contains(got[0].detail, "sub=user-1")) {
				t.Errorf("the event does not name the caller: %+v", got)
			}
		})
	}
}

func TestDefaultAllow(t *testing.T) {
	f := mustBuild(t, "default: allow\nrules:\n  - paths: [/admin/*]\n    require: {authenticated: true}", nil)
	if res := serve(t, f, "GET", "/anything", nil); !res.passed {
		t.Errorf("unmatched request with default allow: %v", res)
	}
	if res := serve(t, f, "GET", "/admin/x", nil); res.passed || res.status != 401 {
		t.Errorf("matched rule with default allow: %v", res)
	}
}

func TestReportMode(t *testing.T) {
	ev := &events{}
	f := mustBuild(t, "mode: report\n"+apiRules, ev)
	for _, tt := range []struct{ method, path, reason string }{
		{"GET", "/v1/orders/1", authz.ReasonUnauthenticated},
		{"GET", "/admin", authz.ReasonDeniedByRule},
		{"GET", "/nowhere", authz.ReasonNoRule},
	} {
		res := serve(t, f, tt.method, tt.path, nil)
		got := ev.take()
		if !res.passed || res.challenge != "" {
			t.Errorf("%s %s in report mode: %v", tt.method, tt.path, res)
		}
		if len(got) != 1 || got[0].kind != "authz_report" || !strings.Contains(got[0].detail, "would refuse: "+tt.reason) {
			t.Errorf("%s %s: events %+v", tt.method, tt.path, got)
		}
	}
	if res := serve(t, f, "GET", "/healthz", nil); !res.passed || len(ev.take()) != 0 {
		t.Errorf("an allowed request in report mode: %v", res)
	}
}

// TestNoEventsSinkLogs: without the core's event sink, refusals go to the logger.
func TestNoEventsSinkLogs(t *testing.T) {
	var buf bytes.Buffer
	f, err := filtertest.Build(t, "authz", apiRules, filtertest.WithBuild(func(b *filter.Build) {
		b.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
	}))
	if err != nil {
		t.Fatal(err)
	}
	if res := serve(t, f, "GET", "/v1/orders/1", nil); res.status != 401 {
		t.Errorf("got %v", res)
	}
	for _, want := range []string{`"event":"security"`, `"kind":"authz_denied"`, `"reason":"authz_unauthenticated"`, `"route":"default/r#0"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log %s lacks %s", buf.String(), want)
		}
	}
}
