package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// The two configs differ only in the route's filters and the access log: the
// baseline is the same ingress terminating TLS 1.3 and forwarding; the edge chain
// adds cors, jwt (an RS256 and an ES256 issuer), a per-subject rate limit and an
// access-log line for every request. Metrics are on in both (they always are).
const listenerAndCluster = `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: public}
spec:
  address: %[1]s
  protocol: HTTPS
  tls:
    minVersion: "1.3"
    certificates:
      - certFile: %[2]s
        keyFile: %[3]s
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: backend}
spec:
  endpoints:
    - address: %[4]s
---
`

const baselineRoute = `apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: api}
spec:
  listeners: [public]
  rules:
    - match: {path: {prefix: /}}
      forward: {backends: [{cluster: backend}]}
---
apiVersion: portcullis.dev/v1alpha1
kind: Telemetry
metadata: {name: telemetry}
spec:
  accessLog: errors
`

const edgeRoute = `apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: api}
spec:
  listeners: [public]
  rules:
    - match: {path: {prefix: /}}
      filters:
        - type: cors
          config:
            allowedOrigins: [%[1]q]
            allowedMethods: [GET, POST]
            allowedHeaders: [Authorization, Content-Type]
            allowCredentials: true
        - type: jwt
          config:
            issuers:
              - issuer: %[2]q
                audiences: [%[4]q]
                algorithms: [RS256]
                jwksFile: %[5]s
              - issuer: %[3]q
                audiences: [%[4]q]
                algorithms: [ES256]
                jwksFile: %[6]s
        - type: ratelimit
          config:
            key: {subject: {}}
            requestsPerSecond: 1000000
            burst: 1000000
      forward: {backends: [{cluster: backend}]}
---
apiVersion: portcullis.dev/v1alpha1
kind: Telemetry
metadata: {name: telemetry}
spec:
  accessLog: all
`

func writeConfigs(m *material, baseAddr, edgeAddr, backend string) (baseline, edge string, err error) {
	head := fmt.Sprintf(listenerAndCluster, baseAddr, m.certFile, m.keyFile, backend)
	baseline = filepath.Join(m.dir, "baseline.yaml")
	if err := os.WriteFile(baseline, []byte(head+baselineRoute), 0o600); err != nil {
		return "", "", err
	}
	head = fmt.Sprintf(listenerAndCluster, edgeAddr, m.certFile, m.keyFile, backend)
	edge = filepath.Join(m.dir, "edge.yaml")
	body := fmt.Sprintf(edgeRoute, origin, rsIssuer, esIssuer, audience, m.rsJWKS, m.esJWKS)
	if err := os.WriteFile(edge, []byte(head+body), 0o600); err != nil {
		return "", "", err
	}
	return baseline, edge, nil
}
