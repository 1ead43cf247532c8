// Package egress is the egress role's policy engine and forward proxy: the one
// way out of the mesh (SP 800-204A SM-DR8, SM-DR9).
//
// A Listener with spec.egress is served by a Handler instead of routes. Every
// request on it names a destination: CONNECT host:port (a tunnel), an
// absolute-form request (GET http://api.example.com/x), or an origin-form one
// whose Host names an ExternalService (an app pointed at the egress by DNS).
// The Handler then
//
//  1. matches the destination (host, port) against the ExternalServices of
//     the listener's namespace (Catalog.Match); none: 403
//     egress_unknown_destination;
//  2. decides with the EgressPolicies (Catalog.Decide) for the caller's SPIFFE
//     ID from its client certificate, or for an anonymous caller without one:
//     default deny, report mode logs and allows;
//  3. resolves the name itself, once, refuses loopback, private, link-local
//     (cloud metadata), CGNAT, multicast and reserved answers unless the
//     service allows private addresses (Guard), and dials exactly the address
//     it checked;
//  4. tunnels (CONNECT) or, for HTTP, runs the listener's filters
//     (spec.egress.filters, WithFilters: credexchange adds the external
//     credential) and forwards the request to the checked address, opening
//     TLS to the service when it has originateTLS. A tunnel is never
//     filtered: it carries the caller's own TLS.
//
// Every decision is counted (portcullis_egress_decisions_total) and every
// denial is a security event. The resolver and the dialer are interfaces, so
// tests replace DNS and the network without touching the rest.
//
// It is not for routing inside the mesh (gateway/route, gateway/snapshot), nor
// for building filters (gateway/snapshot does, from the filter registry) or
// fetching credentials (credexchange/).
package egress
