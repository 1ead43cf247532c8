package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// descriptorSet is the library's compiled descriptors, relative to the module root.
const descriptorSet = "translate/internal/testpb/testdata/library.binpb"

const service = "portcullis.translate.test.library.v1.Library"

// writeConfigs writes the two ingress configs: (a) a REST listener whose route
// transcodes to the library over h2c; (c) an h2c listener whose route forwards
// gRPC to the library as it is. Both log only errors, as a production edge would.
func writeConfigs(dir, restAddr, grpcAddr, backend string) (rest, grpc string, err error) {
	set, err := filepath.Abs(descriptorSet)
	if err != nil {
		return "", "", err
	}
	common := func(listener, protocol string) string {
		return fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: public}
spec:
  address: %s
  protocol: %s
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: library}
spec:
  protocol: H2C
  endpoints: [{address: %q}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Telemetry
metadata: {name: telemetry}
spec:
  accessLog: errors
---
`, listener, protocol, backend)
	}
	restCfg := common(restAddr, "HTTP") + fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: library-rest}
spec:
  listeners: [public]
  rules:
    - match: {path: {prefix: /v1/}}
      forward: {backends: [{cluster: library}]}
      filters:
        - type: transcode
          config:
            descriptorSetFile: %q
            services: [%s]
            cluster: library
`, set, service)
	grpcCfg := common(grpcAddr, "H2C") + `apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: library-grpc}
spec:
  listeners: [public]
  rules:
    - match: {path: {prefix: /}}
      forward: {backends: [{cluster: library}]}
`
	rest, grpc = filepath.Join(dir, "transcode.yaml"), filepath.Join(dir, "grpc.yaml")
	if err := os.WriteFile(rest, []byte(restCfg), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(grpc, []byte(grpcCfg), 0o600); err != nil {
		return "", "", err
	}
	return rest, grpc, nil
}
