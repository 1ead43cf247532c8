// Package cpv1 is the generated Go code of the control plane's wire API
// (controlplane.proto): ConfigPush for proxies, Resources and Registry for
// operators and proxies, CertStorage for the ACME state of ingress proxies.
// Regenerate with scripts/protogen.sh after editing the .proto; never edit the
// generated files by hand.
package cpv1
