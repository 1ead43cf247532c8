// Package config is the file format every proxy and the control plane read: the
// Kubernetes-style kinds (Listener, Route, Cluster, Telemetry, ExternalService,
// EgressPolicy, AuthorizationPolicy, Workload), decoded strictly (an unknown
// field, a wrong type or a fraction in a whole number is an error), with every
// error naming file, line, column, resource and field path; and the checks that
// span resources (references, duplicates) in Validate.
//
// It is the one validation code path: a proxy loading files, a proxy receiving a
// push and the control plane's admin API all decode and validate here, so a config
// one refuses, all refuse, with the same words.
//
// It is not for: runtime state or anything compiled (gateway/snapshot), or a
// filter's own config, which stays a Raw until the filter decodes it.
package config
