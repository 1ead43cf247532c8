package config

import (
	"slices"
	"testing"
)

func TestReferencedFilesOfFilters(t *testing.T) {
	doc := `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: l}
spec: {address: 127.0.0.1:8080}
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: c}
spec: {endpoints: [{address: 127.0.0.1:9000}]}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
  listeners: [l]
  rules:
    - filters:
        - type: tokenmint
          config: {keyFile: /keys/edge.pem, audience: orders}
        - type: oidc
          config:
            clientSecretFile: /secrets/client
            cookie: {secretFile: /secrets/cookie, name: s}
            profile: notAFile
        - type: transcode
          config: {protoFiles: [/protos/a.proto, /protos/b.proto], importPaths: [/protos]}
      forward: {backends: [{cluster: c}]}
`
	set, err := Parse("f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	got := set.ReferencedFiles()
	want := []string{"/keys/edge.pem", "/secrets/client", "/secrets/cookie", "/protos/a.proto", "/protos/b.proto"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("ReferencedFiles = %q, want %q", got, want)
	}
}
