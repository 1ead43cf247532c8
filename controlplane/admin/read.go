package admin

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/controlplane/store"
)

// checkKind refuses a kind the store does not keep (and with it any attempt to
// reach another key by a kind holding "/").
func checkKind(kind string) error {
	if !slices.Contains(auth.ResourceKinds, kind) {
		return status.Errorf(codes.InvalidArgument, "kind %q is not one of %v", kind, auth.ResourceKinds)
	}
	return nil
}

// checkName refuses an empty or malformed namespace or name: lower-case letters,
// digits, '-' and '.', as config requires.
func checkName(field, s string) error {
	if s == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	}
	if len(s) > 253 {
		return status.Errorf(codes.InvalidArgument, "%s is longer than 253 characters", field)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return status.Errorf(codes.InvalidArgument, "%s %q is not a DNS label (lower-case letters, digits, '-', '.')", field, s)
		}
	}
	return nil
}

func toResource(r resources.Resource) (*cpv1.Resource, error) {
	b, err := withVersion(r)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &cpv1.Resource{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, ResourceVersion: resources.FormatVersion(r.Version), Yaml: b}, nil
}

func fromKV(kv store.KV) (resources.Resource, bool) {
	kind, ns, name, ok := resources.ParseKey(kv.Key)
	if !ok {
		return resources.Resource{}, false
	}
	return resources.Resource{Kind: kind, Namespace: ns, Name: name, Version: kv.ModRevision, YAML: kv.Value}, true
}

// Get returns one resource, with metadata.resourceVersion set in its YAML.
func (s *Service) Get(ctx context.Context, req *cpv1.GetRequest) (*cpv1.Resource, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := firstErr(checkKind(req.GetKind()), checkName("namespace", req.GetNamespace()), checkName("name", req.GetName())); err != nil {
		return nil, err
	}
	areq := auth.Request{Verb: auth.Read, Kind: req.GetKind(), Namespace: req.GetNamespace(), Name: req.GetName()}
	d, err := s.authorize(ctx, who, "get", areq)
	if err != nil {
		return nil, err
	}
	entry := &cpv1.AuditEntry{Action: "get", Kind: areq.Kind, Namespace: areq.Namespace, Name: areq.Name, Allowed: true, Reason: d.Reason}
	kv, err := s.st.Get(ctx, resources.Key(areq.Kind, areq.Namespace, areq.Name))
	if err != nil {
		err = storeError(fmt.Sprintf("%s %s/%s", areq.Kind, areq.Namespace, areq.Name), err)
		entry.Reason += "; " + status.Convert(err).Message()
		if rerr := s.record(ctx, who, entry); rerr != nil {
			return nil, rerr
		}
		return nil, err
	}
	r, _ := fromKV(kv)
	entry.BeforeDigest = r.Digest()
	if err := s.record(ctx, who, entry); err != nil {
		return nil, err
	}
	return toResource(r)
}

// List returns the resources of a kind (every kind when empty) in a namespace
// (every namespace when empty) that the caller may read. A caller who may read
// nothing at all of what was asked for is refused rather than shown an empty list.
func (s *Service) List(ctx context.Context, req *cpv1.ListRequest) (*cpv1.ListResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	kind, ns := req.GetKind(), req.GetNamespace()
	if kind != "" {
		if err := checkKind(kind); err != nil {
			return nil, err
		}
	}
	if ns != "" {
		if err := checkName("namespace", ns); err != nil {
			return nil, err
		}
	}
	entry := &cpv1.AuditEntry{Action: "list", Kind: kind, Namespace: ns}
	if !s.policy.MaySome(who, auth.Read, kind, ns) {
		entry.Reason = s.policy.Decide(who, auth.Request{Verb: auth.Read, Kind: kind, Namespace: ns}).Reason
		_ = s.record(ctx, who, entry)
		return nil, status.Error(codes.PermissionDenied, entry.Reason)
	}
	kvs, _, err := s.st.List(ctx, resources.KindPrefix(kind, ns))
	if err != nil {
		return nil, storeError("the resources", err)
	}
	resp := &cpv1.ListResponse{}
	hidden := 0
	for _, kv := range kvs {
		r, ok := fromKV(kv)
		if !ok || ns != "" && r.Namespace != ns {
			continue
		}
		if !s.policy.Decide(who, auth.Request{Verb: auth.Read, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}).Allowed {
			hidden++
			continue
		}
		res, err := toResource(r)
		if err != nil {
			return nil, err
		}
		resp.Resources = append(resp.Resources, res)
	}
	entry.Allowed = true
	entry.Reason = fmt.Sprintf("%d returned, %d not readable by the caller", len(resp.Resources), hidden)
	if err := s.record(ctx, who, entry); err != nil {
		return nil, err
	}
	return resp, nil
}

// Delete removes one resource, if the namespace stays valid without it (a Cluster
// that a Route still forwards to is not deleted) and, when resource_version is
// given, only if the resource is still at that version.
func (s *Service) Delete(ctx context.Context, req *cpv1.DeleteRequest) (*cpv1.DeleteResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := firstErr(checkKind(req.GetKind()), checkName("namespace", req.GetNamespace()), checkName("name", req.GetName())); err != nil {
		return nil, err
	}
	expect, err := resources.ParseVersion(req.GetResourceVersion())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "resource_version: %v", err)
	}
	areq := auth.Request{Verb: auth.Write, Kind: req.GetKind(), Namespace: req.GetNamespace(), Name: req.GetName()}
	ref := fmt.Sprintf("%s %s/%s", areq.Kind, areq.Namespace, areq.Name)
	d, err := s.authorize(ctx, who, "delete", areq)
	if err != nil {
		return nil, err
	}
	entry := &cpv1.AuditEntry{Action: "delete", Kind: areq.Kind, Namespace: areq.Namespace, Name: areq.Name, Allowed: true}
	refuse := func(err error) error {
		entry.Reason = "refused: " + status.Convert(err).Message()
		entry.AfterDigest = entry.BeforeDigest
		_ = s.record(ctx, who, entry)
		return err
	}
	stored, err := s.readNamespaces(ctx, []string{areq.Namespace})
	if err != nil {
		return nil, err
	}
	key := resources.Key(areq.Kind, areq.Namespace, areq.Name)
	current, ok := stored[key]
	if !ok {
		return nil, refuse(status.Errorf(codes.NotFound, "%s not found", ref))
	}
	entry.BeforeDigest = current.Digest()
	if expect != 0 && expect != current.Version {
		return nil, refuse(status.Errorf(codes.Aborted, "conflict, nothing was deleted: %s: resourceVersion %d was given but it is at %d now (changed by someone else)", ref, expect, current.Version))
	}
	if err := validateNamespaces(stored, nil, []string{areq.Namespace}, nil, map[string]bool{key: true}); err != nil {
		return nil, refuse(status.Errorf(codes.FailedPrecondition, "%s cannot be deleted: the namespace would not be valid without it:\n%v", ref, err))
	}
	entry.Reason = "deleted (" + d.Reason + ")"
	if err := s.record(ctx, who, entry); err != nil {
		return nil, err
	}
	if err := s.st.Delete(ctx, key, current.Version); err != nil {
		err = storeError(ref, err)
		_ = refuse(err)
		return nil, err
	}
	return &cpv1.DeleteResponse{}, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
