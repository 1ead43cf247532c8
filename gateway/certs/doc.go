// Package certs obtains and renews the public TLS certificates of an HTTPS
// listener with ACME (RFC 8555), through certmagic: a Manager is built from a
// listener's tls.acme config and a certmagic.Storage, serves certificates to the
// listener's handshakes (GetCertificate, which also answers TLS-ALPN-01
// validation handshakes), answers HTTP-01 validation requests for the
// plain-HTTP listeners (HandleHTTPChallenge), obtains the configured domains in
// the background (Start), obtains certificates on demand for names its
// allow-list permits, and renews them in the background until Close.
//
// The storage is what replicas share: certmagic's locks in it make two replicas
// that want the same certificate place one order, and either replica can answer
// the validation request of an order the other placed. FileStorage is the
// default; any certmagic.Storage fits, such as gateway/certs/cpstorage, which
// keeps it in the control plane.
//
// It is not for choosing among certificates (gateway/listener does that, with
// static certificates first), for static certificate files, or for DNS-01 and
// wildcard certificates, which it does not obtain.
//
// certmagic keeps some state per process rather than per Manager: the answers
// to pending challenges (so any Manager of the process can answer any of them,
// which is what the gateway relies on), the queue of background jobs, and the
// rendezvous of concurrent handshakes waiting for the same name.
package certs
