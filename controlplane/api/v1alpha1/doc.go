// Package cpv1 is the generated Go code of the control plane's wire API
// (controlplane.proto): ConfigPush for proxies, Resources and Registry for
// operators and proxies. Regenerate with scripts/protogen.sh after editing the
// .proto; never edit the generated files by hand.
package cpv1
