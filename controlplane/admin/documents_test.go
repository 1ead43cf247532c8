package admin

import (
	"strings"
	"testing"
)

// TestCanonicalFormIsStable: decoding the stored form gives the stored form back,
// so re-applying what Get returned is "unchanged", never a spurious update.
func TestCanonicalFormIsStable(t *testing.T) {
	docs := `apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: web, namespace: shop, labels: {team: a}}
spec:
  listeners: [web]
  hosts: ["shop.example.com"]
  rules:
    - match: {path: {prefix: /api}, methods: [GET]}
      filters:
        - type: headers
          config: {request: {set: {x-a: "1"}}}
      forward:
        backends: [{cluster: api, weight: 3}]
        retry: {attempts: 2, on: [connect-failure]}
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: api}
spec:
  endpoints: [{address: "10.0.0.1:80"}]
`
	first, _, err := decodeRequest([]byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range first {
		again, _, err := decodeRequest(in.YAML)
		if err != nil {
			t.Fatalf("%s: the canonical form does not decode: %v\n%s", in.Ref(), err, in.YAML)
		}
		if string(again[0].YAML) != string(in.YAML) {
			t.Fatalf("%s: not stable:\n%s\nthen\n%s", in.Ref(), in.YAML, again[0].YAML)
		}
		in.Version = 42
		shown, err := withVersion(in.Resource)
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := decodeRequest(shown)
		if err != nil || back[0].expect != 42 || string(back[0].YAML) != string(in.YAML) {
			t.Fatalf("%s: Get's form does not round-trip: %v\n%s", in.Ref(), err, shown)
		}
	}
	if first[1].Namespace != "default" || !strings.Contains(string(first[1].YAML), "namespace: default") {
		t.Fatalf("the default namespace is not made explicit:\n%s", first[1].YAML)
	}
	if _, _, err := decodeRequest([]byte("# nothing\n")); err == nil {
		t.Fatal("an empty request was accepted")
	}
	if _, _, err := decodeRequest([]byte(strings.Replace(docs, "metadata: {name: api}", `metadata: {name: api, resourceVersion: "x"}`, 1))); err == nil ||
		!strings.Contains(err.Error(), "Cluster default/api: metadata.resourceVersion") {
		t.Fatalf("a bad resourceVersion: %v", err)
	}
}
