// Package acmetest runs a real ACME CA for tests: Pebble's front end, CA and
// validation authority in-process, on loopback, with a DNS server that resolves
// every name to 127.0.0.1, so that validation reaches the listeners under test.
// Validation is real (HTTP-01 requests and TLS-ALPN-01 handshakes to those
// listeners); nothing is made always-valid. It also has the scenarios that a
// certmagic.Storage must pass to back several replicas (ReplicasShareStorage),
// so that any storage implementation can run them.
//
// It is for tests only; its functions take a testing.TB and stop what they start
// at the end of the test.
package acmetest
