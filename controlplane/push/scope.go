package push

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/gateway/config"
)

// WorkloadLabel, in a Listener's, Route's or Cluster's metadata.labels, names the
// Workload (same namespace) whose sidecar receives the resource.
const WorkloadLabel = "portcullis.dev/workload"

// Proxy roles, as a Hello names them.
const (
	RoleIngress = "ingress"
	RoleEgress  = "egress"
	RoleSidecar = "sidecar"
)

// identity is what a proxy claims in its Hello, and what its scope depends on.
// Several nodes (replicas of one gateway) share an identity and its scope.
type identity struct {
	role, namespace, name string
}

func (id identity) String() string { return id.role + ":" + id.namespace + "/" + id.name }

// namespaceKinds are the kinds an ingress or egress receives whole from its namespace.
var namespaceKinds = map[string][]string{
	RoleIngress: {config.KindListener, config.KindRoute, config.KindCluster, config.KindTelemetry},
	RoleEgress: {config.KindListener, config.KindRoute, config.KindCluster, config.KindTelemetry,
		config.KindExternalService, config.KindEgressPolicy},
}

// objectRef names a resource of a known kind.
type objectRef struct{ namespace, name string }

// entry is one stored resource with what scoping needs to know about it, decoded
// once per resource version and shared by every catalog until the resource changes.
type entry struct {
	key    string
	res    resources.Resource
	labels map[string]string
	// For a Route: the listeners it attaches to and the clusters it forwards to.
	listeners []objectRef
	clusters  []objectRef
	// For an AuthorizationPolicy: the workload it applies to.
	workload string
	// For a Cluster: the decoded object, for filling registry endpoints.
	cluster *config.Object[config.ClusterSpec]
	// decoded holds the resource alone, decoded once; scoped sets are assembled from
	// these and validated without parsing YAML again. Shared: never modified.
	decoded *config.Set
	// err is set when the stored document does not decode (it was written by
	// something other than the admin API); a scope that includes it is refused.
	err error
}

func decodeEntry(key string, r resources.Resource) *entry {
	e := &entry{key: key, res: r}
	set := &config.Set{}
	if err := set.Add(r.Ref(), r.YAML); err != nil {
		e.err = err
		return e
	}
	if set.Len() != 1 {
		e.err = fmt.Errorf("%s: the stored value holds %d resources, want 1", r.Ref(), set.Len())
		return e
	}
	switch {
	case len(set.Listeners) == 1:
		e.labels = set.Listeners[0].Meta.Labels
	case len(set.Routes) == 1:
		o := set.Routes[0]
		e.labels = o.Meta.Labels
		for _, l := range o.Spec.Listeners {
			e.listeners = append(e.listeners, objectRef{o.Meta.Namespace, l})
		}
		seen := map[string]bool{}
		for _, rule := range o.Spec.Rules {
			if rule.Forward == nil {
				continue
			}
			for _, b := range rule.Forward.Backends {
				if !seen[b.Cluster] {
					seen[b.Cluster] = true
					// Backends name clusters of the route's own namespace (config.Validate).
					e.clusters = append(e.clusters, objectRef{o.Meta.Namespace, b.Cluster})
				}
			}
		}
	case len(set.Clusters) == 1:
		e.labels = set.Clusters[0].Meta.Labels
		e.cluster = set.Clusters[0]
	case len(set.AuthorizationPolicies) == 1:
		e.workload = set.AuthorizationPolicies[0].Spec.Workload
	}
	if got := set.Documents()[0]; got.Kind != r.Kind || got.Metadata.Namespace != r.Namespace || got.Metadata.Name != r.Name {
		e.err = fmt.Errorf("%s: the stored document is %s %s/%s", r.Ref(), got.Kind, got.Metadata.Namespace, got.Metadata.Name)
	}
	e.decoded = set
	return e
}

// namespaceIndex groups one namespace's entries the ways scoping looks them up.
type namespaceIndex struct {
	byKind map[string][]*entry
	// byWorkload holds the Listeners, Routes and Clusters labelled with WorkloadLabel.
	byWorkload map[string][]*entry
	// authzByWorkload holds the AuthorizationPolicies by the workload they name.
	authzByWorkload map[string][]*entry
}

// catalog is one View of the store, decoded and indexed for scoping. It is
// immutable once built.
type catalog struct {
	// gen increases with every catalog a server builds (a store change or an
	// endpoints change), so that a late offer never replaces a newer one.
	gen      uint64
	revision int64
	entries  map[string]*entry
	spaces   map[string]*namespaceIndex
}

// buildCatalog indexes view, reusing prev's decoded entries for resources that
// did not change.
func buildCatalog(prev *catalog, view *resources.View, gen uint64) *catalog {
	c := &catalog{gen: gen, revision: view.Revision, entries: make(map[string]*entry, len(view.ByKey)), spaces: map[string]*namespaceIndex{}}
	for key, r := range view.ByKey {
		var e *entry
		if prev != nil {
			if old := prev.entries[key]; old != nil && old.res.Version == r.Version {
				e = old
			}
		}
		if e == nil {
			e = decodeEntry(key, r)
		}
		c.entries[key] = e
		ns := c.spaces[r.Namespace]
		if ns == nil {
			ns = &namespaceIndex{byKind: map[string][]*entry{}, byWorkload: map[string][]*entry{}, authzByWorkload: map[string][]*entry{}}
			c.spaces[r.Namespace] = ns
		}
		ns.byKind[r.Kind] = append(ns.byKind[r.Kind], e)
		switch r.Kind {
		case config.KindListener, config.KindRoute, config.KindCluster:
			if w := e.labels[WorkloadLabel]; w != "" {
				ns.byWorkload[w] = append(ns.byWorkload[w], e)
			}
		case config.KindAuthorizationPolicy:
			if e.workload != "" {
				ns.authzByWorkload[e.workload] = append(ns.authzByWorkload[e.workload], e)
			}
		}
	}
	return c
}

// scope returns the entries a proxy receives, sorted by store key (the rules are
// in README.md).
func (c *catalog) scope(id identity) []*entry {
	ns := c.spaces[id.namespace]
	if ns == nil {
		return nil
	}
	picked := map[string]*entry{}
	add := func(es ...*entry) {
		for _, e := range es {
			picked[e.key] = e
		}
	}
	switch id.role {
	case RoleIngress, RoleEgress:
		for _, kind := range namespaceKinds[id.role] {
			add(ns.byKind[kind]...)
		}
	case RoleSidecar:
		if w := c.entries[resources.Key(config.KindWorkload, id.namespace, id.name)]; w != nil {
			add(w)
		}
		add(ns.authzByWorkload[id.name]...)
		add(ns.byWorkload[id.name]...)
		add(ns.byKind[config.KindTelemetry]...)
	}
	// Close over references: a route is useless without the listeners it attaches
	// to and the clusters it forwards to. A reference to a missing resource is left
	// dangling; config.Validate then names it as the scoping error.
	var routes []*entry
	for _, e := range picked {
		if e.res.Kind == config.KindRoute {
			routes = append(routes, e)
		}
	}
	for _, r := range routes {
		for _, l := range r.listeners {
			if e := c.entries[resources.Key(config.KindListener, l.namespace, l.name)]; e != nil {
				add(e)
			}
		}
		for _, cl := range r.clusters {
			if e := c.entries[resources.Key(config.KindCluster, cl.namespace, cl.name)]; e != nil {
				add(e)
			}
		}
	}
	out := make([]*entry, 0, len(picked))
	for _, e := range picked {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// EndpointLookup returns the endpoints registered for a service, and whether the
// service is known.
type EndpointLookup func(namespace, service string) ([]config.Endpoint, bool)

// rendered is one proxy's scoped config: its documents and their version, or why
// it cannot be sent.
type rendered struct {
	version string
	docs    []byte
	count   int // resources
	err     error
}

// render turns entries into the documents a proxy receives and their version (a
// digest of exactly those bytes, so a change outside the scope keeps the version),
// and the same resources as a decoded set, assembled from each entry's decoded
// form, for validation. It does not validate.
func render(entries []*entry, lookup EndpointLookup) (rendered, *config.Set) {
	h := sha256.New()
	docs := make([][]byte, 0, len(entries))
	set := &config.Set{}
	for _, e := range entries {
		if e.err != nil {
			return rendered{err: e.err}, nil
		}
		doc := e.res.YAML
		if e.cluster != nil && e.cluster.Spec.Registry != nil {
			filled, obj, err := fillRegistryEndpoints(e, lookup)
			if err != nil {
				return rendered{err: err}, nil
			}
			doc = filled
			set.Clusters = append(set.Clusters, obj)
		} else {
			merge(set, e.decoded)
		}
		h.Write([]byte(e.key))
		h.Write([]byte{0})
		h.Write(doc)
		h.Write([]byte{0})
		docs = append(docs, doc)
	}
	sum := h.Sum(nil)
	return rendered{version: hex.EncodeToString(sum[:12]), docs: resources.Join(docs), count: len(entries)}, set
}

// merge appends src's resources to dst (sharing the objects).
func merge(dst, src *config.Set) {
	dst.Listeners = append(dst.Listeners, src.Listeners...)
	dst.Routes = append(dst.Routes, src.Routes...)
	dst.Clusters = append(dst.Clusters, src.Clusters...)
	dst.Telemetry = append(dst.Telemetry, src.Telemetry...)
	dst.ExternalServices = append(dst.ExternalServices, src.ExternalServices...)
	dst.EgressPolicies = append(dst.EgressPolicies, src.EgressPolicies...)
	dst.AuthorizationPolicies = append(dst.AuthorizationPolicies, src.AuthorizationPolicies...)
	dst.Workloads = append(dst.Workloads, src.Workloads...)
}

// fillRegistryEndpoints returns the document and object of a cluster that names a
// registry service, with spec.endpoints set to the healthy endpoints the registry
// holds for the service (none when it has none: the proxy then answers 503 for
// it). spec.registry stays, so the proxy knows the endpoints came from the
// control plane.
func fillRegistryEndpoints(e *entry, lookup EndpointLookup) ([]byte, *config.Object[config.ClusterSpec], error) {
	reg := e.cluster.Spec.Registry
	if lookup == nil {
		return nil, nil, fmt.Errorf("%s: spec.registry.service: %q needs the service registry, and this control plane runs none", e.res.Ref(), reg.Service)
	}
	eps, _ := lookup(e.res.Namespace, reg.Service)
	// Sorted, so that the same endpoints in another order are the same version.
	eps = append([]config.Endpoint{}, eps...)
	sort.Slice(eps, func(i, j int) bool { return eps[i].Address < eps[j].Address })
	obj := &config.Object[config.ClusterSpec]{Meta: e.cluster.Meta, Spec: e.cluster.Spec, Source: e.cluster.Source}
	obj.Spec.Endpoints = eps
	doc, err := resources.Canonical(config.Document{APIVersion: config.APIVersion, Kind: config.KindCluster, Metadata: obj.Meta, Spec: obj.Spec})
	return doc, obj, err
}
