// Package auth authenticates callers of the control plane's gRPC and HTTP APIs
// (client certificates, bearer tokens from an OIDC provider, proxy bootstrap
// tokens), authorizes them by roles bound to namespaces, services and kinds, and
// records every admin call in an append-only audit log (SM-DR28).
//
// This file holds the Principal that every API handler reads from its context.
package auth

import "context"

// Principal kinds.
const (
	KindProxy = "proxy" // a proxy with a bootstrap token bound to its identity
	KindUser  = "user"  // a person with a bearer token from the OIDC provider
	KindCert  = "cert"  // a client certificate (operators, automation)
)

// Principal is an authenticated caller.
type Principal struct {
	Kind string
	// Name identifies the caller in audit records and role bindings: the token's
	// name for a proxy, the subject (or configured claim) for a user, the
	// certificate's subject (or URI SAN) for a certificate.
	Name string
	// For proxies, the identity the credential is bound to: the role, namespace and
	// name a proxy may claim in its Hello ("*" in Name: any name in the namespace).
	ProxyRole      string
	ProxyNamespace string
	ProxyName      string
}

// String is "kind:name", the form audit records use.
func (p Principal) String() string { return p.Kind + ":" + p.Name }

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the authenticated caller, or false when the call was not
// authenticated (handlers must then refuse it).
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// MayActAsProxy reports whether p may claim to be the proxy role/namespace/name.
func (p Principal) MayActAsProxy(role, namespace, name string) bool {
	if p.Kind != KindProxy {
		return false
	}
	return p.ProxyRole == role && p.ProxyNamespace == namespace && (p.ProxyName == "*" || p.ProxyName == name)
}
