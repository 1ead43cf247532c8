package config_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
)

// A Cluster takes its endpoints from exactly one of endpoints, dns and registry;
// beside registry, endpoints are the ones the control plane filled in (the form
// a proxy receives), so that pair is accepted, with any number of them.
func TestClusterRegistryDiscovery(t *testing.T) {
	cluster := func(spec string) string {
		return head + "kind: Cluster\nmetadata: {name: cart, namespace: shop}\nspec:\n" + spec
	}
	accepted := map[string]string{
		"registry":                   "  registry: {service: cart}\n",
		"registry with endpoints":    "  registry: {service: cart}\n  endpoints: [{address: \"10.0.0.1:8080\", weight: 3}]\n",
		"registry with no endpoints": "  registry: {service: cart}\n  endpoints: []\n",
	}
	for name, spec := range accepted {
		t.Run(name, func(t *testing.T) {
			set, err := config.Parse("f.yaml", []byte(cluster(spec)))
			if err != nil {
				t.Fatal(err)
			}
			if r := set.Clusters[0].Spec.Registry; r == nil || r.Service != "cart" {
				t.Errorf("registry = %+v, want service cart", r)
			}
		})
	}
	refused := []struct {
		name, spec string
		want       []string
	}{
		{"registry and dns", "  registry: {service: cart}\n  dns: {name: cart.internal, port: 80}\n", []string{"f.yaml:4:", "Cluster shop/cart", "spec:", "exactly one of endpoints, dns and registry"}},
		{"endpoints and dns", "  endpoints: [{address: \"10.0.0.1:8080\"}]\n  dns: {name: cart.internal, port: 80}\n", []string{"exactly one of endpoints, dns and registry"}},
		{"none", "  protocol: HTTP1\n", []string{"exactly one of endpoints, dns and registry"}},
		{"no service", "  registry: {}\n", []string{"f.yaml:5:", "spec.registry.service", "required"}},
		{"bad service", "  registry: {service: Cart_1}\n", []string{"spec.registry.service", `"Cart_1" is not a service name`}},
		{"unknown field", "  registry: {service: cart, namespace: other}\n", []string{"unknown field \"namespace\""}},
		{"pushed endpoint not an IP", "  registry: {service: cart}\n  endpoints: [{address: \"cart:80\"}]\n", []string{"spec.endpoints[0].address"}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("f.yaml", []byte(cluster(c.spec)))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not contain %q", err, w)
				}
			}
		})
	}
}
