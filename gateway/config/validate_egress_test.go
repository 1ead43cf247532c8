package config

import (
	"slices"
	"strings"
	"testing"
)

const egressWithFilters = `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: egress}
spec:
  address: 127.0.0.1:3128
  egress:
    requestTimeout: 10s
    filters:
      - type: credexchange
        config:
          credentials:
            - match: {callers: ["*"]}
              inject: {apiKey: {header: X-API-Key, valueFile: /secrets/partner-key}}
`

// spec.egress.filters decodes like a Route rule's filters, and the files its
// filters name (credexchange's secrets) make up the config's version.
func TestEgressFiltersDecodeAndReferenceFiles(t *testing.T) {
	set, err := Parse("f.yaml", []byte(egressWithFilters))
	if err != nil {
		t.Fatal(err)
	}
	fl := set.Listeners[0].Spec.Egress.Filters
	if len(fl) != 1 || fl[0].Type != "credexchange" || fl[0].Config.IsZero() {
		t.Fatalf("filters = %+v", fl)
	}
	if got := set.ReferencedFiles(); !slices.Contains(got, "/secrets/partner-key") {
		t.Errorf("ReferencedFiles = %q, want the egress filter's valueFile", got)
	}
}

func TestEgressFilterTypeRequired(t *testing.T) {
	doc := strings.Replace(egressWithFilters, "      - type: credexchange\n", "      - type: \"\"\n", 1)
	_, err := Parse("f.yaml", []byte(doc))
	if err == nil {
		t.Fatal("a filter without a type was accepted")
	}
	for _, want := range []string{"f.yaml:9:", "Listener default/egress", "spec.egress.filters[0].type", "required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\n does not say %q", err, want)
		}
	}
}
