package auth

import (
	"sort"

	"github.com/portcullis/portcullis/gateway/config"
)

// Pseudo-kinds: things a rule can grant that are not config resources.
const (
	// KindRegistryEndpoint is an endpoint in the service registry; its name in a
	// Request is the service's name.
	KindRegistryEndpoint = "RegistryEndpoint"
	// KindProxyStatus is what the control plane knows of connected proxies
	// (Resources.Status); its namespace is the proxy's.
	KindProxyStatus = "ProxyStatus"
	// KindAuditEntry is the audit log (Resources.Audit). The log spans every
	// namespace, so only a rule for namespace "*" grants reading it.
	KindAuditEntry = "AuditEntry"
	// KindStoreSnapshot is a backup of the whole store (every namespace, the audit
	// log, the registry), so only a rule for namespace "*" grants reading it.
	KindStoreSnapshot = "StoreSnapshot"
	// KindSecret is reserved for a Secret kind; no API serves it yet, and rules
	// may already name it so that roles need no change when one does.
	KindSecret = "Secret"
)

// Categories group kinds the way roles grant them. A rule's kinds list may name a
// category instead of its kinds; a later kind added to a category is then granted
// without editing the role.
var Categories = map[string][]string{
	"routes":     {config.KindRoute, config.KindListener},
	"policies":   {config.KindAuthorizationPolicy, config.KindEgressPolicy, config.KindExternalService},
	"resilience": {config.KindCluster},
	"telemetry":  {config.KindTelemetry},
	"workloads":  {config.KindWorkload},
	"registry":   {KindRegistryEndpoint},
	"secrets":    {KindSecret},
	"status":     {KindProxyStatus},
	"audit":      {KindAuditEntry},
	"backup":     {KindStoreSnapshot},
}

// ResourceKinds are the config kinds the Resources API stores.
var ResourceKinds = []string{
	config.KindListener, config.KindRoute, config.KindCluster, config.KindTelemetry,
	config.KindExternalService, config.KindEgressPolicy, config.KindAuthorizationPolicy, config.KindWorkload,
}

// knownKinds is every kind a rule may name.
var knownKinds = func() map[string]bool {
	m := map[string]bool{}
	for _, kinds := range Categories {
		for _, k := range kinds {
			m[k] = true
		}
	}
	return m
}()

// CategoryNames returns the category names, sorted (for error messages).
func CategoryNames() []string {
	out := make([]string, 0, len(Categories))
	for c := range Categories {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
