package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
)

const head = "apiVersion: portcullis.dev/v1alpha1\n"

const validListener = head + `kind: Listener
metadata: {name: pub}
spec:
  address: 127.0.0.1:8080
`

const validCluster = head + `kind: Cluster
metadata: {name: be}
spec:
  endpoints: [{address: "127.0.0.1:9000"}]
`

func route(body string) string {
	return head + "kind: Route\nmetadata: {name: r}\nspec:\n  listeners: [pub]\n" + body
}

func TestParseErrorsNamePlaceAndField(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{name: "unknown field", doc: validListener + "  bogus: 1\n", want: []string{"f.yaml:6:3", "Listener default/pub", "spec.bogus", `unknown field "bogus"`}},
		{name: "wrong apiVersion", doc: strings.Replace(validListener, "v1alpha1", "v9", 1), want: []string{"f.yaml:1", "apiVersion", "unsupported"}},
		{name: "unknown kind", doc: strings.Replace(validListener, "kind: Listener", "kind: Gateway", 1), want: []string{"f.yaml:2", "kind", `unknown kind "Gateway"`}},
		{name: "bad name", doc: strings.Replace(validListener, "name: pub", "name: Pub_1", 1), want: []string{"metadata.name", "DNS label"}},
		{name: "missing spec", doc: head + "kind: Cluster\nmetadata: {name: x}\n", want: []string{"spec: required"}},
		{name: "bad duration", doc: validListener + "  limits: {idleTimeout: 5}\n", want: []string{"f.yaml:6:", "spec.limits.idleTimeout", "not a duration"}},
		{name: "negative duration", doc: validListener + "  limits: {idleTimeout: -5s}\n", want: []string{"not a duration"}},
		{name: "bad address", doc: strings.Replace(validListener, "127.0.0.1:8080", "localhost", 1), want: []string{"f.yaml:5:", "spec.address", "not host:port"}},
		{name: "https without tls", doc: validListener + "  protocol: HTTPS\n", want: []string{"spec.tls", "required for protocol HTTPS"}},
		{name: "dangling cluster", doc: validListener + "---\n" + validCluster + "---\n" + route("  rules:\n    - forward: {backends: [{cluster: nope}]}\n"),
			want: []string{"f.yaml:19:", "Route default/r", "spec.rules[0].forward.backends[0].cluster", `no Cluster "nope"`}},
		{name: "dangling listener", doc: validCluster + "---\n" + route("  rules:\n    - forward: {backends: [{cluster: be}]}\n"),
			want: []string{"spec.listeners[0]", `no Listener "pub"`}},
		{name: "two actions", doc: validListener + "---\n" + validCluster + "---\n" + route("  rules:\n    - forward: {backends: [{cluster: be}]}\n      directResponse: {status: 200}\n"),
			want: []string{"spec.rules[0]", "exactly one of forward, redirect and directResponse"}},
		{name: "two path matchers", doc: validListener + "---\n" + route("  rules:\n    - match: {path: {exact: /a, prefix: /b}}\n      directResponse: {status: 200}\n"),
			want: []string{"spec.rules[0].match.path", "exactly one of exact, prefix, regex and template"}},
		{name: "wildcard not a whole label", doc: validListener + "---\n" + route("  hosts: [\"a*.example.com\"]\n  rules:\n    - directResponse: {status: 200}\n"),
			want: []string{"spec.hosts[0]", "whole leading label"}},
		{name: "static endpoint is a name", doc: strings.Replace(validCluster, "127.0.0.1:9000", "backend:9000", 1), want: []string{"spec.endpoints[0].address", "use dns for host names"}},
		{name: "h2c with tls", doc: validCluster + "  protocol: H2C\n  tls: {}\n", want: []string{"spec.protocol", "clear text"}},
		{name: "ring hash without key", doc: validCluster + "  loadBalancer: {policy: ringHash}\n", want: []string{"spec.loadBalancer.hash", "required"}},
		{name: "retriable-status without statuses", doc: validListener + "---\n" + validCluster + "---\n" + route("  rules:\n    - forward: {backends: [{cluster: be}], retry: {attempts: 1, on: [retriable-status]}}\n"),
			want: []string{"retry.statuses", "needs the statuses"}},
		{name: "duplicate name", doc: validCluster + "---\n" + validCluster, want: []string{"Cluster default/be", "defined more than once"}},
		{name: "same address twice", doc: validListener + "---\n" + strings.Replace(validListener, "name: pub", "name: pub2", 1), want: []string{"spec.address", "already used"}},
		{name: "yaml syntax", doc: "apiVersion: [\n", want: []string{"f.yaml:"}},
		{name: "upgrade not a token", doc: validListener + "---\n" + validCluster + "---\n" + route("  rules:\n    - forward: {backends: [{cluster: be}], upgrades: [websocket, \"web socket\"]}\n"),
			want: []string{"spec.rules[0].forward.upgrades[1]", "not a protocol name"}},
		{name: "upgrade listed twice", doc: validListener + "---\n" + validCluster + "---\n" + route("  rules:\n    - forward: {backends: [{cluster: be}], upgrades: [websocket, WebSocket]}\n"),
			want: []string{"spec.rules[0].forward.upgrades[1]", "listed twice"}},
		{name: "h2c upgrade", doc: validListener + "---\n" + validCluster + "---\n" + route("  rules:\n    - forward: {backends: [{cluster: be}], upgrades: [H2C]}\n"),
			want: []string{"spec.rules[0].forward.upgrades[0]", "h2c cannot be tunnelled"}},
		{name: "upgrade idle timeout too long", doc: validListener + "---\n" + validCluster + "---\n" + route("  rules:\n    - forward: {backends: [{cluster: be}], upgrades: [websocket], upgradeIdleTimeout: 48h}\n"),
			want: []string{"spec.rules[0].forward.upgradeIdleTimeout", "between 1s and 24h"}},
		{name: "upgrade idle timeout too short", doc: validListener + "---\n" + validCluster + "---\n" + route("  rules:\n    - forward: {backends: [{cluster: be}], upgradeIdleTimeout: 10ms}\n"),
			want: []string{"spec.rules[0].forward.upgradeIdleTimeout", "between 1s and 24h"}},
		{name: "upgrade to an HTTP/2 cluster", doc: validListener + "---\n" + validCluster + "  protocol: H2C\n---\n" + route("  rules:\n    - forward: {backends: [{cluster: be}], upgrades: [websocket]}\n"),
			want: []string{"spec.rules[0].forward.backends[0].cluster", "speaks H2C", "upgrades need an HTTP1 cluster"}},
		{name: "fraction into a whole number", doc: validListener + "  limits: {maxConnections: 10.5}\n", want: []string{"f.yaml:6:", "spec.limits.maxConnections", "10.5 is not a whole number"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("f.yaml", []byte(c.doc))
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

func TestParseReportsEveryError(t *testing.T) {
	doc := validListener + "  protocol: SPDY\n  paths: {escapedSlashes: maybe}\n"
	_, err := config.Parse("f.yaml", []byte(doc))
	var errs []*config.Error
	for _, e := range unwrapAll(err) {
		var ce *config.Error
		if errors.As(e, &ce) {
			errs = append(errs, ce)
		}
	}
	if len(errs) != 2 {
		t.Fatalf("want 2 errors, got %d: %v", len(errs), err)
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestParseValidSet(t *testing.T) {
	doc := validListener + "---\n" + validCluster + "---\n" + route(`  hosts: [api.example.com, "*.example.org"]
  rules:
    - name: canary
      match:
        path: {prefix: /api}
        methods: [GET, POST]
        headers: [{name: X-Canary, present: true}]
        query: [{name: debug, absent: true}]
      filters:
        - type: headers
          config: {request: {set: {X-A: b}}}
      forward:
        backends: [{cluster: be, weight: 9}, {cluster: be, weight: 1}]
        timeout: 2s
        retry: {attempts: 2, on: [5xx, retriable-status], statuses: [429]}
        upgrades: [WebSocket]
        upgradeIdleTimeout: 10m
`) + "---\n" + head + "kind: Telemetry\nmetadata: {name: t}\nspec: {accessLog: all}\n"
	set, err := config.Parse("f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 4 || len(set.Routes) != 1 {
		t.Fatalf("set has %d resources", set.Len())
	}
	r := set.Routes[0]
	if fw := r.Spec.Rules[0].Forward; r.Meta.Namespace != "default" || fw.Timeout.D().String() != "2s" ||
		len(fw.Upgrades) != 1 || fw.Upgrades[0] != "WebSocket" || fw.UpgradeIdleTimeout.D().String() != "10m0s" {
		t.Fatalf("decoded %+v", r.Spec.Rules[0].Forward)
	}
	var fc struct {
		Request map[string]map[string]string `yaml:"request"`
	}
	if err := r.Spec.Rules[0].Filters[0].Config.Decode(&fc); err != nil || fc.Request["set"]["X-A"] != "b" {
		t.Fatalf("filter config %v %v", fc, err)
	}
	// Unknown fields in a filter's config are errors with the config's own line.
	var strict struct {
		Response string `yaml:"response"`
	}
	err = r.Spec.Rules[0].Filters[0].Config.Decode(&strict)
	if err == nil || !strings.Contains(err.Error(), "f.yaml:28:") || !strings.Contains(err.Error(), "filters[0].config") {
		t.Fatalf("strict filter decode error: %v", err)
	}
	if _, err := config.Parse("f.yaml", []byte("")); err != nil {
		t.Fatalf("an empty file is an empty set, not an error: %v", err)
	}
}

// FuzzParse: no input may panic the decoder or validator; an accepted set must
// survive being written out and read back.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validListener + "---\n" + validCluster))
	f.Add([]byte(route("  rules:\n    - directResponse: {status: 200}\n")))
	f.Add([]byte("apiVersion: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := config.Parse("fuzz.yaml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		_ = set.Documents()
	})
}

func TestFilterConfigFractionRefused(t *testing.T) {
	doc := validListener + "---\n" + route(`  rules:
    - filters:
        - type: x
          config: {burst: 1.5, rate: 0.25}
      directResponse: {status: 200}
`)
	set, err := config.Parse("f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var ok struct {
		Burst float64 `yaml:"burst"`
		Rate  float64 `yaml:"rate"`
	}
	if err := set.Routes[0].Spec.Rules[0].Filters[0].Config.Decode(&ok); err != nil || ok.Burst != 1.5 {
		t.Fatalf("floats into floats: %v %v", ok, err)
	}
	var whole struct {
		Burst int     `yaml:"burst"`
		Rate  float64 `yaml:"rate"`
	}
	err = set.Routes[0].Spec.Rules[0].Filters[0].Config.Decode(&whole)
	if err == nil || !strings.Contains(err.Error(), "1.5 is not a whole number") || !strings.Contains(err.Error(), "f.yaml:15:") {
		t.Fatalf("fraction into an int: %v", err)
	}
}
