package admin

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/gateway/config"
)

// RequestFile is the file name the documents of an apply request have in error
// messages ("request:12:5: Route shop/web: ..."). portctl, which knows which of
// its files each line came from, rewrites these places to the files' own.
const RequestFile = "request"

// incoming is one document of an apply request.
type incoming struct {
	resources.Resource
	// expect is the resourceVersion the document carried (0: none).
	expect int64
}

func (in incoming) key() string { return resources.Key(in.Kind, in.Namespace, in.Name) }

// decodeRequest reads an apply request's documents with the proxies' decoder
// (strict: unknown fields, wrong types and bad values are errors naming line and
// field), without checking references yet: those are checked against the
// namespace's stored resources by validateNamespaces. It returns the documents in
// canonical form and the set they were decoded into.
func decodeRequest(documents []byte) ([]incoming, *config.Set, error) {
	set := &config.Set{}
	if err := set.Add(RequestFile, documents); err != nil {
		return nil, nil, err
	}
	docs := set.Documents()
	if len(docs) == 0 {
		return nil, nil, errors.New("the request holds no documents")
	}
	out := make([]incoming, 0, len(docs))
	for _, d := range docs {
		expect, err := resources.ParseVersion(d.Metadata.ResourceVersion)
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s/%s: %w", d.Kind, d.Metadata.Namespace, d.Metadata.Name, err)
		}
		d.Metadata.ResourceVersion = ""
		b, err := resources.Canonical(d)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, incoming{
			Resource: resources.Resource{Kind: d.Kind, Namespace: d.Metadata.Namespace, Name: d.Metadata.Name, YAML: b},
			expect:   expect,
		})
	}
	return out, set, nil
}

// validateNamespaces checks what every namespace in namespaces would hold: the
// stored resources (except those in replaced, and those in removed) plus set's. The checks and their error text are config.Validate's, which proxies run
// on what they receive. Each namespace is checked on its own, as proxies receive
// them; stored documents are named by their store key in errors.
func validateNamespaces(stored map[string]resources.Resource, set *config.Set, namespaces []string, replaced, removed map[string]bool) error {
	sorted := (&resources.View{ByKey: stored}).Sorted()
	var errs []error
	for _, ns := range namespaces {
		nsSet := filterSet(set, ns)
		for _, r := range sorted {
			key := resources.Key(r.Kind, r.Namespace, r.Name)
			if r.Namespace != ns || replaced[key] || removed[key] {
				continue
			}
			if err := nsSet.Add(key, r.YAML); err != nil {
				errs = append(errs, fmt.Errorf("stored %s no longer decodes: %w", r.Ref(), err))
			}
		}
		if err := config.Validate(nsSet); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// filterSet returns a new set with set's resources of namespace ns (shared, not
// copied: Validate only reads them).
func filterSet(set *config.Set, ns string) *config.Set {
	out := &config.Set{}
	if set == nil {
		return out
	}
	out.Listeners = inNamespace(set.Listeners, ns)
	out.Routes = inNamespace(set.Routes, ns)
	out.Clusters = inNamespace(set.Clusters, ns)
	out.Telemetry = inNamespace(set.Telemetry, ns)
	out.ExternalServices = inNamespace(set.ExternalServices, ns)
	out.EgressPolicies = inNamespace(set.EgressPolicies, ns)
	out.AuthorizationPolicies = inNamespace(set.AuthorizationPolicies, ns)
	out.Workloads = inNamespace(set.Workloads, ns)
	return out
}

func inNamespace[S any](list []*config.Object[S], ns string) []*config.Object[S] {
	var out []*config.Object[S]
	for _, o := range list {
		if o.Meta.Namespace == ns {
			out = append(out, o)
		}
	}
	return out
}

// namespacesOf returns the distinct namespaces of docs, sorted.
func namespacesOf(docs []incoming) []string {
	var out []string
	for _, d := range docs {
		if !slices.Contains(out, d.Namespace) {
			out = append(out, d.Namespace)
		}
	}
	sort.Strings(out)
	return out
}

// withVersion returns a stored resource's document with metadata.resourceVersion
// set, as the API shows it (send it back to make the next write conditional).
// It decodes without validating: a Route alone names Clusters it does not hold.
func withVersion(r resources.Resource) ([]byte, error) {
	set := &config.Set{}
	if err := set.Add(r.Ref(), r.YAML); err != nil {
		return nil, fmt.Errorf("stored %s does not decode: %w", r.Ref(), err)
	}
	docs := set.Documents()
	if len(docs) != 1 {
		return nil, fmt.Errorf("stored %s holds %d documents, want 1", r.Ref(), len(docs))
	}
	docs[0].Metadata.ResourceVersion = resources.FormatVersion(r.Version)
	return resources.Canonical(docs[0])
}

// writeOrder is the order in which an apply writes kinds: what others refer to
// first, so that a proxy that is pushed a namespace half-way through an apply
// sees fewer dangling references.
var writeOrder = map[string]int{
	config.KindListener: 0, config.KindCluster: 1, config.KindExternalService: 2, config.KindWorkload: 3,
	config.KindTelemetry: 4, config.KindRoute: 5, config.KindEgressPolicy: 6, config.KindAuthorizationPolicy: 7,
}
