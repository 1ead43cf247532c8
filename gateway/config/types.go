package config

import (
	"fmt"
	"strconv"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// APIVersion is the only apiVersion this build reads. A later, incompatible file
// format gets a new version string and its own conversion, never a silent change.
const APIVersion = "portcullis.dev/v1alpha1"

// Kind names. Every role reads the same kinds; a role ignores the ones it does not
// use (the ingress has no use for EgressPolicy, for example) but still validates them,
// so one file can describe a whole mesh.
const (
	KindListener            = "Listener"
	KindRoute               = "Route"
	KindCluster             = "Cluster"
	KindTelemetry           = "Telemetry"
	KindExternalService     = "ExternalService"
	KindEgressPolicy        = "EgressPolicy"
	KindAuthorizationPolicy = "AuthorizationPolicy"
	KindWorkload            = "Workload"
)

// Metadata names a resource. Name is required; Namespace defaults to "default".
type Metadata struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace,omitempty"`
	Labels    map[string]string `yaml:"labels,omitempty"`
	// ResourceVersion is the control plane's version of the stored resource. Sent
	// back with a write, it makes the write conditional: a resource changed by
	// someone else since gets a conflict instead of being overwritten. Proxies and
	// files ignore it.
	ResourceVersion string `yaml:"resourceVersion,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("250ms", "5s", "1m").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalText parses a Go duration string; a bare number is refused because its
// unit would be a guess.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return errNegativeDuration
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads a duration string and names its position when it is wrong.
func (d *Duration) UnmarshalYAML(n ast.Node) error {
	s, ok := n.(*ast.StringNode)
	if !ok {
		return nodeError(n, fmt.Sprintf("%s is not a duration such as \"250ms\" or \"5s\"", n.String()))
	}
	if err := d.UnmarshalText([]byte(s.Value)); err != nil {
		return nodeError(n, fmt.Sprintf("%q is not a duration such as \"250ms\" or \"5s\": %v", s.Value, err))
	}
	return nil
}

// MarshalText writes the duration back in the form UnmarshalText reads.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// ---------------------------------------------------------------------------
// Listener: a socket that accepts client connections. Used by every role.

// Listener protocols.
const (
	ProtocolHTTP  = "HTTP"  // HTTP/1.1 in clear text
	ProtocolHTTPS = "HTTPS" // HTTP/1.1 and HTTP/2 over TLS (ALPN)
	ProtocolH2C   = "H2C"   // HTTP/1.1 and HTTP/2 in clear text (prior knowledge), for gRPC inside a host
)

// ListenerSpec is the spec of a Listener.
type ListenerSpec struct {
	// Address is host:port to bind, e.g. "127.0.0.1:8443" or "[::1]:8080".
	Address string `yaml:"address"`
	// Protocol is HTTP, HTTPS or H2C. Default HTTP, or HTTPS when tls is set.
	Protocol string `yaml:"protocol,omitempty"`
	// TLS is required for HTTPS and refused otherwise.
	TLS *ListenerTLS `yaml:"tls,omitempty"`
	// Limits bound what one client can hold; every field has a safe default.
	Limits ListenerLimits `yaml:"limits,omitempty"`
	// TrustedProxies lists CIDRs whose X-Forwarded-*/Forwarded headers are kept;
	// from any other peer those headers are replaced.
	TrustedProxies []string `yaml:"trustedProxies,omitempty"`
	// Paths sets the path normalisation policy applied before routing.
	Paths PathPolicy `yaml:"paths,omitempty"`
	// Egress, when set (`egress: {}` takes every default), makes the listener
	// an egress forward proxy: every request on it is an egress request
	// (CONNECT, absolute-form, or origin-form naming an ExternalService),
	// decided by the ExternalService and EgressPolicy resources of the
	// listener's namespace (default deny). Routes may not attach to it.
	Egress *ListenerEgress `yaml:"egress,omitempty"`
}

// ListenerEgress tunes an egress listener (see docs/egress.md). Every field
// has a safe default.
type ListenerEgress struct {
	// ResolveTimeout bounds the DNS lookup of a destination. Default 2s.
	ResolveTimeout *Duration `yaml:"resolveTimeout,omitempty"`
	// ConnectTimeout bounds the connection to a destination (and the TLS
	// handshake when the egress originates TLS). Default 5s.
	ConnectTimeout *Duration `yaml:"connectTimeout,omitempty"`
	// RequestTimeout bounds a whole forwarded HTTP exchange (absolute-form and
	// origin-form requests), response body included. Default 30s.
	RequestTimeout *Duration `yaml:"requestTimeout,omitempty"`
	// TunnelIdleTimeout closes a CONNECT tunnel after this long without a byte
	// in either direction. Default 1h.
	TunnelIdleTimeout *Duration `yaml:"tunnelIdleTimeout,omitempty"`
	// Filters run, in order, on every HTTP request (absolute-form and
	// origin-form) the policy allowed, just before it is forwarded: the same
	// filter types and config as a Route rule's filters, credexchange above
	// all. They never run on CONNECT, whose tunnel carries the caller's own
	// TLS that the egress cannot read or change.
	Filters []FilterSpec `yaml:"filters,omitempty"`
}

// ListenerTLS configures TLS termination: static certificates from files,
// certificates obtained with ACME, or both. At least one of Certificates and ACME
// is required. With both, a static certificate whose names cover the client's
// SNI name wins, then a managed one, then the first static certificate.
type ListenerTLS struct {
	Certificates []CertificateFiles `yaml:"certificates,omitempty"`
	// ACME obtains and renews certificates from an ACME CA (RFC 8555).
	ACME *ACME `yaml:"acme,omitempty"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"minVersion,omitempty"`
	// ClientCAFile, when set, makes the listener require and verify client
	// certificates signed by these CAs (mTLS).
	ClientCAFile string `yaml:"clientCAFile,omitempty"`
	// HSTS, when set, adds Strict-Transport-Security to every response sent
	// over this listener (RFC 6797). Never sent in clear text.
	HSTS *HSTS `yaml:"hsts,omitempty"`
	// OCSPStapling staples OCSP responses to ACME-managed certificates when their
	// CA runs a responder. Default true. Static certificates are served as loaded.
	OCSPStapling *bool `yaml:"ocspStapling,omitempty"`
}

// ACME challenge types for ACME.Challenges.
const (
	ChallengeHTTP01    = "HTTP01"    // RFC 8555 §8.3, answered on a plain-HTTP listener
	ChallengeTLSALPN01 = "TLSALPN01" // RFC 8737, answered on this HTTPS listener
)

// ACME obtains certificates from an ACME CA and renews them in the background.
type ACME struct {
	// Email is the account contact the CA may write to about expiring certificates.
	Email string `yaml:"email,omitempty"`
	// Directory is the CA's ACME directory URL (https). Required: there is no
	// default CA.
	Directory string `yaml:"directory"`
	// CARootFile is a PEM bundle trusted for the connection to the directory, for
	// a private CA. Default: the system roots.
	CARootFile string `yaml:"caRootFile,omitempty"`
	// Domains are obtained at start, in the background, and kept renewed.
	Domains []string `yaml:"domains,omitempty"`
	// Challenges are the validation methods offered. Default both.
	Challenges []string `yaml:"challenges,omitempty"`
	// OnDemand obtains a certificate during the first handshake for a name the
	// allow-list permits.
	OnDemand *OnDemand `yaml:"onDemand,omitempty"`
	// Storage holds the account, keys, certificates and locks: a directory, or
	// the control plane. Default: the directory "certs" under the proxy's -data
	// directory.
	Storage *ACMEStorage `yaml:"storage,omitempty"`
	// RenewBefore renews a certificate at the latest when this much of its
	// lifetime is left. Default: a third of its lifetime. The CA may ask for an
	// earlier renewal (ACME Renewal Information).
	RenewBefore *Duration `yaml:"renewBefore,omitempty"`
}

// OnDemand is on-demand issuance, bounded by an allow-list.
type OnDemand struct {
	// Allow lists exact names ("shop.example.com") and one-label wildcards
	// ("*.example.com": a.example.com, not a.b.example.com or example.com).
	Allow []string `yaml:"allow"`
}

// ACMEStorage is where ACME state is kept: exactly one of Path and
// ControlPlane.
type ACMEStorage struct {
	// Path is a directory. Replicas that share it coordinate issuance through
	// lock files in it.
	Path string `yaml:"path,omitempty"`
	// ControlPlane keeps the state in the control plane's store, through its
	// CertStorage API, under the namespace of the proxy's credential. Replicas
	// coordinate issuance through the control plane's locks. Only for an
	// ingress run with -controlplane.
	ControlPlane bool `yaml:"controlPlane,omitempty"`
}

// HSTS is the Strict-Transport-Security policy sent on a TLS listener.
type HSTS struct {
	// MaxAge is how long browsers remember to use HTTPS only, in whole seconds
	// ("31536000s", "8760h"). Required; "0s" tells browsers to forget the policy.
	MaxAge *Duration `yaml:"maxAge"`
	// IncludeSubDomains applies the policy to every subdomain too.
	IncludeSubDomains bool `yaml:"includeSubDomains,omitempty"`
	// Preload asks for inclusion in the browsers' preload lists; it needs
	// includeSubDomains and a maxAge of at least a year.
	Preload bool `yaml:"preload,omitempty"`
}

// HSTSMinPreloadAge is the shortest max-age the browsers' preload lists accept.
const HSTSMinPreloadAge = 365 * 24 * time.Hour

// Header returns the Strict-Transport-Security header value (RFC 6797 §6.1);
// max-age is in whole seconds, rounded down. Without MaxAge it is max-age=0.
func (h HSTS) Header() string {
	var age time.Duration
	if h.MaxAge != nil {
		age = h.MaxAge.D()
	}
	v := "max-age=" + strconv.FormatInt(int64(age/time.Second), 10)
	if h.IncludeSubDomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v
}

// CertificateFiles is a PEM certificate chain and its private key.
type CertificateFiles struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// ListenerLimits are the edge limits of a listener. Zero means "use the default".
type ListenerLimits struct {
	MaxConnections        int      `yaml:"maxConnections,omitempty"`        // default 10000
	MaxRequestHeaderBytes int      `yaml:"maxRequestHeaderBytes,omitempty"` // default 32 KiB; above it: 431
	MaxRequestHeaders     int      `yaml:"maxRequestHeaders,omitempty"`     // default 100 fields; above it: 431
	ReadHeaderTimeout     Duration `yaml:"readHeaderTimeout,omitempty"`     // default 10s (slowloris)
	IdleTimeout           Duration `yaml:"idleTimeout,omitempty"`           // default 120s
	MaxConcurrentStreams  int      `yaml:"maxConcurrentStreams,omitempty"`  // HTTP/2, default 250
	MaxRequestBodyBytes   int64    `yaml:"maxRequestBodyBytes,omitempty"`   // default 16 MiB; routes may override; above it: 413
}

// Escaped-slash policies for PathPolicy.EscapedSlashes.
const (
	EscapedSlashesReject = "reject" // 400 (default): %2F and %5C in a path are refused
	EscapedSlashesKeep   = "keep"   // forwarded as they came, never matched as separators
	EscapedSlashesDecode = "decode" // decoded to '/' before routing and forwarding
)

// PathPolicy is how a request path is normalised before routing. Dot segments are
// always resolved (RFC 3986 §5.2.4) and a path that climbs above the root is refused.
type PathPolicy struct {
	// MergeSlashes turns "//" into "/". Default true; set false to keep them.
	MergeSlashes *bool `yaml:"mergeSlashes,omitempty"`
	// EscapedSlashes is reject (default), keep, or decode.
	EscapedSlashes string `yaml:"escapedSlashes,omitempty"`
}

// ---------------------------------------------------------------------------
// Route: how requests on listeners reach clusters.

// RouteSpec is the spec of a Route.
type RouteSpec struct {
	// Listeners names the Listener resources this route attaches to (same namespace).
	Listeners []string `yaml:"listeners"`
	// Hosts are exact names ("api.example.com") or one leading wildcard label
	// ("*.example.com"). Empty matches any host. Ports in the Host header are ignored.
	Hosts []string `yaml:"hosts,omitempty"`
	// Rules are tried in order; the first whose match succeeds serves the request.
	Rules []RouteRule `yaml:"rules"`
}

// RouteRule is one match and what to do with requests that match it. Exactly one of
// Forward, Redirect and DirectResponse is set.
type RouteRule struct {
	Name           string          `yaml:"name,omitempty"`
	Match          Match           `yaml:"match,omitempty"`
	Filters        []FilterSpec    `yaml:"filters,omitempty"`
	Forward        *Forward        `yaml:"forward,omitempty"`
	Redirect       *Redirect       `yaml:"redirect,omitempty"`
	DirectResponse *DirectResponse `yaml:"directResponse,omitempty"`
}

// Match selects requests. All set parts must match.
type Match struct {
	Path    *PathMatch   `yaml:"path,omitempty"`
	Methods []string     `yaml:"methods,omitempty"`
	Headers []ValueMatch `yaml:"headers,omitempty"`
	Query   []ValueMatch `yaml:"query,omitempty"`
}

// PathMatch is exactly one of Exact, Prefix, Regex and Template.
type PathMatch struct {
	Exact  string `yaml:"exact,omitempty"`
	Prefix string `yaml:"prefix,omitempty"` // segment-aware: "/api" matches "/api" and "/api/x", not "/apix"
	Regex  string `yaml:"regex,omitempty"`  // RE2, anchored at both ends
	// Template is a path template: "/users/{id}", "/files/{path=**}", "/v1/{name=shelves/*}".
	Template string `yaml:"template,omitempty"`
}

// ValueMatch matches one header or query parameter by name. Exactly one of Exact,
// Regex, Present and Absent is set.
type ValueMatch struct {
	Name    string `yaml:"name"`
	Exact   string `yaml:"exact,omitempty"`
	Regex   string `yaml:"regex,omitempty"`
	Present bool   `yaml:"present,omitempty"`
	Absent  bool   `yaml:"absent,omitempty"`
}

// FilterSpec names a filter and carries its config, decoded strictly by the filter.
type FilterSpec struct {
	Type   string `yaml:"type"`
	Config Raw    `yaml:"config,omitempty"`
}

// Forward sends the request to one or more clusters.
type Forward struct {
	// Backends are weighted: a request goes to one of them chosen by weight
	// (canary, blue/green). Weights default to 1; a weight of 0 takes no traffic.
	Backends []Backend `yaml:"backends"`
	// Timeout bounds the whole exchange, retries and response body included.
	// Default (and 0s): 30s. Streaming routes need a larger value.
	Timeout *Duration `yaml:"timeout,omitempty"`
	// PerTryTimeout bounds one attempt. Default: no per-try bound beyond Timeout.
	PerTryTimeout *Duration    `yaml:"perTryTimeout,omitempty"`
	Retry         *RetryPolicy `yaml:"retry,omitempty"`
	Rewrite       *Rewrite     `yaml:"rewrite,omitempty"`
	// MaxRequestBodyBytes overrides the listener's limit for this rule (413 above it).
	MaxRequestBodyBytes *int64 `yaml:"maxRequestBodyBytes,omitempty"`
	// Upgrades lists the protocols (Upgrade tokens, RFC 9110 §7.8, such as
	// "websocket"; case-insensitive) that an HTTP/1.1 client may switch to
	// through this rule: the upstream's 101 is relayed and the connection
	// becomes a tunnel. Default: none; an upgrade request for another protocol
	// is forwarded as a plain request without its Upgrade header.
	Upgrades []string `yaml:"upgrades,omitempty"`
	// UpgradeIdleTimeout closes a tunnel after this long without a byte in
	// either direction, from 1s to 24h. Default (and 0s): 1h.
	UpgradeIdleTimeout *Duration `yaml:"upgradeIdleTimeout,omitempty"`
}

// Backend is one weighted cluster of a Forward.
type Backend struct {
	Cluster string `yaml:"cluster"`
	Weight  *int   `yaml:"weight,omitempty"`
}

// Retry conditions for RetryPolicy.On.
const (
	RetryOnConnectFailure = "connect-failure"  // the connection could not be made
	RetryOnReset          = "reset"            // the upstream reset or closed before responding
	RetryOnGatewayError   = "gateway-error"    // 502, 503, 504
	RetryOn5xx            = "5xx"              // any 5xx, and reset, and connect-failure
	RetryOnStatus         = "retriable-status" // a status listed in Statuses
)

// RetryPolicy says when and how often a failed attempt is repeated. Requests that
// are not idempotent (POST, PATCH, or with a body that was already sent) are retried
// only on connect-failure, where the upstream provably saw nothing.
type RetryPolicy struct {
	Attempts int      `yaml:"attempts"`           // retries after the first try; default 0
	On       []string `yaml:"on,omitempty"`       // default [connect-failure, reset, gateway-error]
	Statuses []int    `yaml:"statuses,omitempty"` // for retriable-status
	// Backoff between tries: full jitter between 0 and min(Max, Base*2^n).
	BackoffBase *Duration `yaml:"backoffBase,omitempty"` // default 25ms
	BackoffMax  *Duration `yaml:"backoffMax,omitempty"`  // default 250ms
	// Budget caps retries as a share of active requests per cluster, so retries
	// cannot multiply an outage. Default 20 percent, with at least 3 concurrent retries.
	BudgetPercent       *float64 `yaml:"budgetPercent,omitempty"`
	MinRetryConcurrency *int     `yaml:"minRetryConcurrency,omitempty"`
	// RetryNonIdempotent allows retrying POST/PATCH on every listed condition.
	RetryNonIdempotent bool `yaml:"retryNonIdempotent,omitempty"`
}

// Rewrite changes the request before it is forwarded. Prefix and Regex exclusive.
type Rewrite struct {
	// Prefix replaces the matched path prefix (the rule must match by prefix).
	Prefix *string       `yaml:"prefix,omitempty"`
	Regex  *RegexRewrite `yaml:"regex,omitempty"`
	// Host replaces the Host header sent upstream.
	Host string `yaml:"host,omitempty"`
}

// RegexRewrite replaces every match of Pattern in the path by Substitution
// (RE2 syntax, with $1-style references).
type RegexRewrite struct {
	Pattern      string `yaml:"pattern"`
	Substitution string `yaml:"substitution"`
}

// Redirect answers with a redirect built from the request.
type Redirect struct {
	Scheme     string `yaml:"scheme,omitempty"`
	Host       string `yaml:"host,omitempty"`
	Port       int    `yaml:"port,omitempty"`
	Path       string `yaml:"path,omitempty"`   // replaces the whole path
	Prefix     string `yaml:"prefix,omitempty"` // replaces the matched prefix
	Status     int    `yaml:"status,omitempty"` // 301 (default), 302, 303, 307, 308
	StripQuery bool   `yaml:"stripQuery,omitempty"`
}

// DirectResponse answers without an upstream.
type DirectResponse struct {
	Status  int               `yaml:"status"`
	Body    string            `yaml:"body,omitempty"`
	Headers map[string]string `yaml:"headers,omitempty"`
}

// ---------------------------------------------------------------------------
// Cluster: a set of endpoints of one upstream service.

// Upstream protocols.
const (
	UpstreamHTTP1 = "HTTP1" // HTTP/1.1 (default); over TLS when tls is set
	UpstreamHTTP2 = "HTTP2" // HTTP/2 over TLS (requires tls)
	UpstreamH2C   = "H2C"   // HTTP/2 in clear text with prior knowledge (gRPC)
)

// ClusterSpec is the spec of a Cluster. Exactly one of Endpoints, DNS and Registry
// is set; beside Registry, Endpoints are the ones the control plane filled in.
type ClusterSpec struct {
	Endpoints []Endpoint    `yaml:"endpoints,omitempty"`
	DNS       *DNSDiscovery `yaml:"dns,omitempty"`
	// Registry takes the endpoints from the control plane's service registry: the
	// control plane fills Endpoints with the service's healthy endpoints in every
	// push (none: requests get 503). A proxy run from files refuses it.
	Registry         *RegistryDiscovery `yaml:"registry,omitempty"`
	Protocol         string             `yaml:"protocol,omitempty"`
	TLS              *UpstreamTLS       `yaml:"tls,omitempty"`
	LoadBalancer     LoadBalancer       `yaml:"loadBalancer,omitempty"`
	HealthCheck      *HealthCheck       `yaml:"healthCheck,omitempty"`
	OutlierDetection *OutlierDetection  `yaml:"outlierDetection,omitempty"`
	CircuitBreaker   CircuitBreaker     `yaml:"circuitBreaker,omitempty"`
	ConnectTimeout   *Duration          `yaml:"connectTimeout,omitempty"` // default 5s
	Pool             ConnectionPool     `yaml:"pool,omitempty"`
}

// Endpoint is one upstream address with a load-balancing weight (default 1).
type Endpoint struct {
	Address string `yaml:"address"` // host:port, host an IP literal
	Weight  int    `yaml:"weight,omitempty"`
}

// DNSDiscovery resolves Name periodically; each A/AAAA record is an endpoint on Port.
type DNSDiscovery struct {
	Name            string    `yaml:"name"`
	Port            int       `yaml:"port"`
	RefreshInterval *Duration `yaml:"refreshInterval,omitempty"` // default 30s
}

// RegistryDiscovery names a service of the control plane's registry, in the
// Cluster's namespace.
type RegistryDiscovery struct {
	Service string `yaml:"service"`
}

// UpstreamTLS originates TLS (and mTLS with CertFile/KeyFile) to the endpoints.
type UpstreamTLS struct {
	ServerName string `yaml:"serverName,omitempty"`
	CAFile     string `yaml:"caFile,omitempty"` // default: system roots
	CertFile   string `yaml:"certFile,omitempty"`
	KeyFile    string `yaml:"keyFile,omitempty"`
	// InsecureSkipVerify disables certificate checks; for tests only, and logged at start.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify,omitempty"`
}

// Load-balancing policies.
const (
	LBRoundRobin   = "roundRobin"   // smooth weighted round robin (default)
	LBLeastRequest = "leastRequest" // power of two choices on in-flight requests, weighted
	LBRandom       = "random"       // weighted random
	LBRingHash     = "ringHash"     // consistent hashing on Hash (session persistence)
	LBMaglev       = "maglev"       // consistent hashing with a Maglev table
)

// LoadBalancer picks an endpoint for each request.
type LoadBalancer struct {
	Policy string   `yaml:"policy,omitempty"`
	Hash   *HashKey `yaml:"hash,omitempty"` // required for ringHash and maglev
	// StickyCookie pins a client to an endpoint with a signed cookie (MS-SS-10).
	StickyCookie *StickyCookie `yaml:"stickyCookie,omitempty"`
}

// HashKey is exactly one of Header, Cookie and SourceIP.
type HashKey struct {
	Header   string `yaml:"header,omitempty"`
	Cookie   string `yaml:"cookie,omitempty"`
	SourceIP bool   `yaml:"sourceIP,omitempty"`
}

// StickyCookie is an HMAC-signed cookie naming the endpoint a client was sent to.
type StickyCookie struct {
	Name string    `yaml:"name"`
	TTL  *Duration `yaml:"ttl,omitempty"` // default: session cookie
	// SecretFile holds the HMAC key (at least 32 bytes). Without it a random key is
	// made at start and cookies do not survive a restart.
	SecretFile string `yaml:"secretFile,omitempty"`
}

// HealthCheck probes every endpoint in the background, never on the request path.
type HealthCheck struct {
	Path               string    `yaml:"path"`
	Interval           *Duration `yaml:"interval,omitempty"`           // default 5s
	Timeout            *Duration `yaml:"timeout,omitempty"`            // default 1s
	HealthyThreshold   int       `yaml:"healthyThreshold,omitempty"`   // default 2
	UnhealthyThreshold int       `yaml:"unhealthyThreshold,omitempty"` // default 3
	ExpectedStatuses   []int     `yaml:"expectedStatuses,omitempty"`   // default 200-399
}

// OutlierDetection ejects endpoints that fail passing traffic.
type OutlierDetection struct {
	Consecutive5xx     int       `yaml:"consecutive5xx,omitempty"`     // default 5
	BaseEjectionTime   *Duration `yaml:"baseEjectionTime,omitempty"`   // default 30s, times the number of ejections
	MaxEjectionPercent int       `yaml:"maxEjectionPercent,omitempty"` // default 50
}

// CircuitBreaker bounds what the proxy sends to one cluster (MS-SS-6). Over a
// limit the request fails fast with 503 and the overflow is counted.
type CircuitBreaker struct {
	MaxConnections     int `yaml:"maxConnections,omitempty"`     // default 1024
	MaxPendingRequests int `yaml:"maxPendingRequests,omitempty"` // default 1024
	MaxRequests        int `yaml:"maxRequests,omitempty"`        // default 1024
	MaxRetries         int `yaml:"maxRetries,omitempty"`         // default 3
}

// ConnectionPool bounds idle upstream connections.
type ConnectionPool struct {
	MaxIdlePerEndpoint int       `yaml:"maxIdlePerEndpoint,omitempty"` // default 256
	IdleTimeout        *Duration `yaml:"idleTimeout,omitempty"`        // default 90s
}

// ---------------------------------------------------------------------------
// Telemetry: logging, tracing and metrics settings for the whole proxy.

// Access-log modes.
const (
	AccessLogErrors = "errors" // non-2xx/3xx responses only (default)
	AccessLogAll    = "all"
	AccessLogOff    = "off"
)

// TelemetrySpec is the spec of the (at most one) Telemetry resource.
type TelemetrySpec struct {
	AccessLog string   `yaml:"accessLog,omitempty"`
	Tracing   *Tracing `yaml:"tracing,omitempty"`
	// MaskHeaders adds header names whose values are masked in logs, beside the
	// built-in Authorization, Proxy-Authorization, Cookie, Set-Cookie and *api-key*.
	MaskHeaders []string `yaml:"maskHeaders,omitempty"`
}

// Tracing exports OpenTelemetry spans over OTLP/HTTP when Endpoint is set. W3C
// traceparent is propagated whether or not spans are exported.
type Tracing struct {
	Endpoint     string  `yaml:"endpoint,omitempty"`     // host:port of an OTLP/HTTP collector
	Insecure     bool    `yaml:"insecure,omitempty"`     // plain HTTP to the collector
	SamplingRate float64 `yaml:"samplingRate,omitempty"` // 0..1, default 1 (parent-based)
	ServiceName  string  `yaml:"serviceName,omitempty"`
}

// ---------------------------------------------------------------------------
// Kinds used by the egress and the sidecar. They are validated by every role.

// ExternalServiceSpec models a service outside the mesh (SM-DR8) that the egress may reach.
type ExternalServiceSpec struct {
	Hosts []string `yaml:"hosts"` // exact DNS names or "*.example.com"
	Ports []int    `yaml:"ports"`
	// OriginateTLS makes the egress open TLS to the service for callers speaking plain HTTP.
	OriginateTLS bool   `yaml:"originateTLS,omitempty"`
	CAFile       string `yaml:"caFile,omitempty"`
	// AllowPrivateAddresses permits resolved addresses in private, loopback or
	// link-local ranges. Off by default: that is the SSRF guard.
	AllowPrivateAddresses bool `yaml:"allowPrivateAddresses,omitempty"`
}

// Policy enforcement modes.
const (
	ModeEnforce = "enforce" // default: denials are applied
	ModeReport  = "report"  // denials are logged and counted, not applied
)

// EgressPolicySpec allows callers (by identity) to reach external services.
// Everything not allowed is denied.
type EgressPolicySpec struct {
	// From are caller identities: SPIFFE IDs, or prefixes ending in "/*"
	// ("spiffe://corp/ns/shop/*": every identity under that path). "*" alone
	// is every caller, anonymous ones (no client certificate) included.
	From []string `yaml:"from"`
	// To names ExternalService resources in the same namespace.
	To []string `yaml:"to"`
	// Methods and Paths (segment-aware prefixes) narrow what HTTP requests
	// may do; empty allows all. A CONNECT tunnel hides both, so a policy
	// with paths, or with methods not listing CONNECT, never allows one.
	Methods []string `yaml:"methods,omitempty"`
	Paths   []string `yaml:"paths,omitempty"`
	// Mode report allows what the policy's callers send to its services but
	// would deny, and logs and counts it instead.
	Mode string `yaml:"mode,omitempty"`
}

// AuthorizationPolicySpec allows or denies inbound requests at a sidecar. With no
// ALLOW policy matching, a request is denied (default deny, SM-DR1).
type AuthorizationPolicySpec struct {
	// Workload names the Workload this applies to (same namespace).
	Workload string      `yaml:"workload"`
	Action   string      `yaml:"action"` // ALLOW or DENY
	Rules    []AuthzRule `yaml:"rules"`
	Mode     string      `yaml:"mode,omitempty"`
}

// AuthzRule matches a caller and an operation; empty lists match anything.
type AuthzRule struct {
	From    []string `yaml:"from,omitempty"` // SPIFFE IDs or patterns ending in "/*"
	Methods []string `yaml:"methods,omitempty"`
	Paths   []string `yaml:"paths,omitempty"` // prefixes
}

// WorkloadSpec describes a service instance behind a sidecar: what it accepts
// inbound (declared ports and protocols only, SM-DR1) and where its app listens.
type WorkloadSpec struct {
	ServiceAccount string        `yaml:"serviceAccount"`
	Inbound        []InboundPort `yaml:"inbound"`
}

// InboundPort maps a mesh port to the app's loopback port.
type InboundPort struct {
	Port     int    `yaml:"port"`
	Protocol string `yaml:"protocol"` // HTTP, H2C (gRPC)
	AppPort  int    `yaml:"appPort"`
}
