package auth_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/controlplane/auth"
)

func testPolicy(t *testing.T) *auth.Policy {
	t.Helper()
	p, err := auth.NewPolicy([]auth.Role{
		{Name: "admin", Rules: []auth.Rule{{Namespaces: []string{"*"}, Kinds: []string{"*"}, Verbs: []auth.Verb{auth.Read, auth.Write}}}},
		{Name: "shop-routes", Rules: []auth.Rule{
			{Namespaces: []string{"shop"}, Kinds: []string{"routes", "resilience"}, Verbs: []auth.Verb{auth.Read, auth.Write}},
			{Namespaces: []string{"shop"}, Services: []string{"checkout"}, Kinds: []string{"AuthorizationPolicy"}, Verbs: []auth.Verb{auth.Read}},
		}},
		{Name: "registrar", Rules: []auth.Rule{{Namespaces: []string{"shop"}, Services: []string{"cart"}, Kinds: []string{"registry"}, Verbs: []auth.Verb{auth.Write}}}},
	}, []auth.Binding{
		{Role: "admin", Principals: []string{"cert:spiffe://example.com/deployer"}},
		{Role: "shop-routes", Principals: []string{"user:alice@example.com", "token:ci"}},
		{Role: "registrar", Principals: []string{"token:ci"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyDecide(t *testing.T) {
	p := testPolicy(t)
	alice := auth.Principal{Kind: auth.KindUser, Name: "alice@example.com"}
	ci := auth.Principal{Kind: auth.KindToken, Name: "ci"}
	deployer := auth.Principal{Kind: auth.KindCert, Name: "spiffe://example.com/deployer"}
	proxy := auth.Principal{Kind: auth.KindProxy, Name: "alice@example.com", ProxyRole: "ingress", ProxyNamespace: "shop", ProxyName: "*"}
	bob := auth.Principal{Kind: auth.KindUser, Name: "bob@example.com"}
	req := func(v auth.Verb, kind, ns, name string) auth.Request {
		return auth.Request{Verb: v, Kind: kind, Namespace: ns, Name: name}
	}
	cases := []struct {
		name   string
		who    auth.Principal
		req    auth.Request
		allow  bool
		reason string
	}{
		{"category grants its kinds", alice, req(auth.Write, "Listener", "shop", "web"), true, "role shop-routes (rule 0)"},
		{"category grants its kinds 2", alice, req(auth.Write, "Cluster", "shop", "api"), true, "role shop-routes"},
		{"other namespace", alice, req(auth.Read, "Route", "payments", "web"), false, "no role bound to user:alice@example.com grants read Route payments/web"},
		{"kind outside the categories", alice, req(auth.Write, "EgressPolicy", "shop", "x"), false, "grants write EgressPolicy"},
		{"service-limited rule, named service", alice, req(auth.Read, "AuthorizationPolicy", "shop", "checkout"), true, "rule 1"},
		{"service-limited rule, other service", alice, req(auth.Read, "AuthorizationPolicy", "shop", "cart"), false, ""},
		{"service-limited rule, every name", alice, req(auth.Read, "AuthorizationPolicy", "shop", ""), false, ""},
		{"read-only rule refuses write", alice, req(auth.Write, "AuthorizationPolicy", "shop", "checkout"), false, ""},
		{"two roles bound", ci, req(auth.Write, "RegistryEndpoint", "shop", "cart"), true, "role registrar"},
		{"wildcards", deployer, req(auth.Write, "Secret", "anything", "x"), true, "role admin"},
		{"audit needs namespace *", alice, req(auth.Read, "AuditEntry", "*", ""), false, ""},
		{"admin reads the audit log", deployer, req(auth.Read, "AuditEntry", "*", ""), true, ""},
		{"unbound", bob, req(auth.Read, "Route", "shop", "web"), false, "no role is bound to user:bob@example.com"},
		{"proxies never, whatever their name", proxy, req(auth.Read, "Route", "shop", "web"), false, "is a proxy credential"},
		{"proxies not even the registry here", proxy, req(auth.Write, "RegistryEndpoint", "shop", "cart"), false, "proxy credential"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.who, tc.req)
			if d.Allowed != tc.allow || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Decide = %+v, want allowed %v with reason containing %q", d, tc.allow, tc.reason)
			}
		})
	}
}

func TestPolicyMaySome(t *testing.T) {
	p := testPolicy(t)
	alice := auth.Principal{Kind: auth.KindUser, Name: "alice@example.com"}
	for _, tc := range []struct {
		kind, ns string
		want     bool
	}{
		{"", "", true}, {"Route", "", true}, {"Route", "shop", true}, {"", "shop", true},
		{"Route", "payments", false}, {"", "payments", false}, {"Workload", "shop", false},
	} {
		if got := p.MaySome(alice, auth.Read, tc.kind, tc.ns); got != tc.want {
			t.Errorf("MaySome(read, %q, %q) = %v, want %v", tc.kind, tc.ns, got, tc.want)
		}
	}
	if p.MaySome(auth.Principal{Kind: auth.KindProxy, Name: "x", ProxyNamespace: "shop"}, auth.Read, "", "") {
		t.Error("a proxy may read through the admin API")
	}
}

func TestNewPolicyRefusesMistakes(t *testing.T) {
	_, err := auth.NewPolicy([]auth.Role{
		{Name: "a", Rules: []auth.Rule{{Kinds: []string{"Route"}, Verbs: []auth.Verb{"read"}}}},
		{Name: "a", Rules: []auth.Rule{{Namespaces: []string{"x"}, Kinds: []string{"Route"}, Verbs: []auth.Verb{"read"}}}},
		{Name: "b"},
	}, []auth.Binding{{Role: "a", Principals: []string{"group:ops"}}})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`roles[0].rules[0].namespaces: at least one namespace`,
		`roles[1].name: role "a" is defined more than once`,
		`roles[2].rules: at least one rule is required`,
		`bindings[0].principals[0]: "group:ops": kind "group" is not one of user, cert, token`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
