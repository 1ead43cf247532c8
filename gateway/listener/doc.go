// Package listener accepts clients for every role (ingress, egress, sidecar): it
// binds the socket (SO_REUSEPORT, so a changed listener can be rebound while the
// old one drains), terminates TLS (static, reloadable certificates and ACME-managed
// ones from a CertificateSource, chosen by SNI; mTLS with a client CA; HSTS; the
// ACME TLS-ALPN-01 and HTTP-01 challenge hooks), serves HTTP/1.1, HTTP/2 over TLS
// (ALPN) and h2c, and
// applies the edge limits of config.ListenerLimits: connections, header bytes and
// fields, header and idle timeouts, HTTP/2 streams.
//
// Before net/http parses a request, every HTTP/1.x connection passes through a
// framing guard that refuses requests whose length is ambiguous (request
// smuggling, RFC 9112 §6.1, §6.3, §11.2). PathNormalizer is the path policy the
// core applies before routing.
//
// It is not for what happens after a request is read: routing, request body
// limits (MaxRequestBodyBytes is resolved here but applied per route by the core),
// X-Forwarded-* and trusted proxies, access logs and metrics. It reports security
// events through Events and leaves recording them to gateway/observe.
package listener
