// Package route is the route table every role (ingress, egress, sidecar) uses to
// pick the rule that serves a request: Compile turns rules (hosts, a config.Match
// and an opaque value) into an immutable Table once per config snapshot, and
// Table.Match picks a value per request without scanning every rule. It also
// exports the path-template parser (ParseTemplate) that the REST-to-gRPC
// translator reuses.
//
// It is not for: normalising the path or the host (the listener does that before
// routing), rewriting, forwarding, or deciding what a rule does; the value is
// opaque here.
//
// # Hosts
//
// A rule's hosts are exact names ("api.example.com") or wildcards
// ("*.example.com"); case is ignored. A wildcard matches one or more leading
// labels, as in the Gateway API: "*.example.com" matches "a.example.com" and
// "a.b.example.com" but not "example.com". A rule without hosts is a catch-all.
//
// For a request host, Match picks one bucket, the most specific that exists: the
// exact name; else the wildcard with the longest suffix ("*.b.example.com" before
// "*.example.com"); else the catch-all rules. Only that bucket is searched. There
// is no fall-through: when the host has a bucket and none of its rules matches,
// Match reports no match even if a less specific bucket would have (as Envoy's
// virtual hosts behave). Within the bucket, the first rule in declaration order
// whose whole match succeeds wins.
//
// # Path
//
//   - exact: the path equals the string.
//   - prefix: segment-aware. "/api" matches "/api", "/api/" and "/api/x" but not
//     "/apix". A prefix ending in '/' matches as written: "/api/" matches "/api/"
//     and "/api/x" but not "/api".
//   - regex: RE2 syntax, anchored at both ends (it must match the whole path).
//   - template: google.api.http syntax, see ParseTemplate. "/users/{id}",
//     "/files/{path=**}", "/v1/{name=shelves/*/books/*}:publish". Captured
//     variables are returned as Params, not percent-decoded.
//
// All matching is byte-wise on the path as given, without percent-decoding.
//
// # Method, headers and query
//
// Methods: the request method must be one of the list (empty: any). Methods are
// case-sensitive and GET does not imply HEAD.
//
// Headers and query parameters are matched by name (header names case-insensitively,
// query names exactly) with exact, regex (anchored), present or absent. When a
// name has several values (header field lines, repeated query keys), one matching
// value suffices; values are not joined with commas. Query values are decoded
// ('+' is a space) and pairs that do not decode are ignored. The query string is
// parsed only when a candidate rule has query matchers, at most once per Match.
// The Host header cannot be matched here (Go keeps it out of Request.Header): use
// hosts.
//
// # Cost
//
// Each host bucket indexes exact paths in a map and every other rule in a trie of
// path segments, under its literal leading segments (a prefix's segments, a
// template's leading literals, the literal start of a regex). Match tries only the
// rules on the walk down the request path's segments, in declaration order, and
// stops at the first full match, so 10,000 rules in one bucket cost about what a
// few do. Rules with nothing literal to index (no path matcher, "/{x}/y", "(?i)/a")
// are tried for every request of their bucket. Match allocates only the Params of
// a template with variables and the parsed query.
package route
