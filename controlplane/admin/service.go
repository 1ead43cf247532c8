// Package admin is the control plane's admin API: the Resources gRPC service
// (apply, get, list, delete, status, audit) over the store, and the same calls as
// HTTP/JSON. Every call is authenticated (by the auth package's interceptors or
// middleware, before it arrives here), authorized per kind, namespace and name
// (auth.Policy), and recorded in the audit log, allowed or refused.
//
// An apply is checked with the proxies' own decoder and validator against what the
// namespace would hold afterwards, so the control plane stores nothing a proxy
// would refuse. Writes are conditional on the revision the apply was checked
// against (optimistic concurrency).
//
// It is not for: authentication (auth), pushing config to proxies (push) or
// serving the registry (registry).
package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/controlplane/store"
)

// StatusSource reports the proxies the push server knows (push.Server).
type StatusSource interface {
	Status(ctx context.Context) ([]*cpv1.ProxyStatus, error)
}

// Auditor is the audit log (auth.AuditLog).
type Auditor interface {
	Append(ctx context.Context, e *cpv1.AuditEntry) (int64, error)
	List(ctx context.Context, after int64, limit int) ([]*cpv1.AuditEntry, error)
}

// Authorizer decides requests (auth.Policy).
type Authorizer interface {
	Decide(who auth.Principal, req auth.Request) auth.Decision
	MaySome(who auth.Principal, verb auth.Verb, kind, namespace string) bool
}

// Options are a Service's collaborators. Store, Policy and Audit are required.
type Options struct {
	Store  store.Store
	Policy Authorizer
	Audit  Auditor
	// Status answers the Status call; nil: no proxies are reported.
	Status StatusSource
	// Leader returns the name of the replica that leads ("" while unknown); nil:
	// none is reported.
	Leader func(ctx context.Context) string
	// Snapshot writes a consistent backup of the whole store to w (store.Etcd's
	// Snapshot); nil: GET /v1/snapshot answers Unimplemented.
	Snapshot func(ctx context.Context, w io.Writer) (int64, error)
	// Logger receives audit-log failures; nil discards.
	Logger *slog.Logger
}

// Service implements cpv1.ResourcesServer.
type Service struct {
	cpv1.UnimplementedResourcesServer
	st       store.Store
	policy   Authorizer
	audit    Auditor
	status   StatusSource
	leader   func(ctx context.Context) string
	snapshot func(ctx context.Context, w io.Writer) (int64, error)
	log      *slog.Logger
}

var _ cpv1.ResourcesServer = (*Service)(nil)

// New returns the service.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Policy == nil || opts.Audit == nil {
		return nil, errors.New("admin: Options.Store, Policy and Audit are required")
	}
	s := &Service{st: opts.Store, policy: opts.Policy, audit: opts.Audit,
		status: opts.Status, leader: opts.Leader, snapshot: opts.Snapshot, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.leader == nil {
		s.leader = func(context.Context) string { return "" }
	}
	return s, nil
}

// auditTimeout bounds writing one audit entry.
const auditTimeout = 5 * time.Second

// maxReasonBytes bounds the reason kept in an audit entry (a validation error can
// list many problems; the caller got them all).
const maxReasonBytes = 2048

// caller returns the authenticated principal, or Unauthenticated when the call
// reached the service without one (a wiring mistake: fail closed).
func caller(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return auth.Principal{}, status.Error(codes.Unauthenticated, "the call is not authenticated")
	}
	return p, nil
}

// record appends one audit entry for who. An entry that cannot be written fails
// the call (Unavailable): the API does nothing it cannot record.
func (s *Service) record(ctx context.Context, who auth.Principal, e *cpv1.AuditEntry) error {
	e.Principal = who.String()
	if len(e.Reason) > maxReasonBytes {
		e.Reason = e.Reason[:maxReasonBytes] + "…"
	}
	// A caller that gave up must not keep its call out of the log.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if _, err := s.audit.Append(actx, e); err != nil {
		s.log.Error("audit log: an entry could not be written; the call is refused",
			"principal", e.Principal, "action", e.Action, "kind", e.Kind, "namespace", e.Namespace, "name", e.Name, "err", err)
		return status.Error(codes.Unavailable, "the audit log cannot be written, so nothing was done; try again")
	}
	return nil
}

// authorize decides one request; a refusal is audited and returned as
// PermissionDenied.
func (s *Service) authorize(ctx context.Context, who auth.Principal, action string, req auth.Request) (auth.Decision, error) {
	d := s.policy.Decide(who, req)
	if d.Allowed {
		return d, nil
	}
	_ = s.record(ctx, who, &cpv1.AuditEntry{Action: action, Kind: req.Kind, Namespace: req.Namespace, Name: req.Name, Reason: d.Reason})
	return d, status.Error(codes.PermissionDenied, d.Reason)
}

// storeError turns a store failure into a gRPC status.
func storeError(what string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Errorf(codes.NotFound, "%s not found", what)
	case errors.Is(err, store.ErrConflict):
		return status.Errorf(codes.Aborted, "%s was changed by someone else since it was read; get it again and retry", what)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "%s: the store did not answer in time", what)
	default:
		return status.Errorf(codes.Unavailable, "%s: the store failed: %v", what, err)
	}
}

// readNamespaces reads every stored resource of the namespaces, straight from the
// store (one small range read per kind and namespace), so that a check made on
// them sees every write acknowledged before, whichever replica made it.
func (s *Service) readNamespaces(ctx context.Context, namespaces []string) (map[string]resources.Resource, error) {
	byKey := map[string]resources.Resource{}
	for _, ns := range namespaces {
		for _, kind := range auth.ResourceKinds {
			kvs, _, err := s.st.List(ctx, resources.KindPrefix(kind, ns))
			if err != nil {
				return nil, storeError("the resources of namespace "+ns, err)
			}
			for _, kv := range kvs {
				if r, ok := fromKV(kv); ok && r.Namespace == ns {
					byKey[kv.Key] = r
				}
			}
		}
	}
	return byKey, nil
}

// Status reports the connected proxies the caller may read (per namespace) and
// the leading replica.
func (s *Service) Status(ctx context.Context, _ *cpv1.StatusRequest) (*cpv1.StatusResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if !s.policy.MaySome(who, auth.Read, auth.KindProxyStatus, "") {
		d := s.policy.Decide(who, auth.Request{Verb: auth.Read, Kind: auth.KindProxyStatus})
		_ = s.record(ctx, who, &cpv1.AuditEntry{Action: "status", Kind: auth.KindProxyStatus, Reason: d.Reason})
		return nil, status.Error(codes.PermissionDenied, d.Reason)
	}
	resp := &cpv1.StatusResponse{Leader: s.leader(ctx)}
	if s.status != nil {
		proxies, err := s.status.Status(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "proxy status: %v", err)
		}
		for _, p := range proxies {
			if s.policy.Decide(who, auth.Request{Verb: auth.Read, Kind: auth.KindProxyStatus, Namespace: p.Namespace, Name: p.Name}).Allowed {
				resp.Proxies = append(resp.Proxies, p)
			}
		}
	}
	if err := s.record(ctx, who, &cpv1.AuditEntry{Action: "status", Kind: auth.KindProxyStatus, Allowed: true, Reason: "ok"}); err != nil {
		return nil, err
	}
	return resp, nil
}

// Audit returns audit entries after a sequence. The log spans every namespace,
// so reading it needs a rule for namespace "*".
func (s *Service) Audit(ctx context.Context, req *cpv1.AuditRequest) (*cpv1.AuditResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetAfterSequence() < 0 || req.GetLimit() < 0 {
		return nil, status.Error(codes.InvalidArgument, "after_sequence and limit must not be negative")
	}
	d, err := s.authorize(ctx, who, "audit", auth.Request{Verb: auth.Read, Kind: auth.KindAuditEntry, Namespace: "*"})
	if err != nil {
		return nil, err
	}
	entries, err := s.audit.List(ctx, req.GetAfterSequence(), int(req.GetLimit()))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	if err := s.record(ctx, who, &cpv1.AuditEntry{Action: "audit", Kind: auth.KindAuditEntry, Allowed: true, Reason: d.Reason}); err != nil {
		return nil, err
	}
	return &cpv1.AuditResponse{Entries: entries}, nil
}

// refs joins resource references for a message.
func refs(list []string) string {
	if len(list) > 5 {
		return strings.Join(list[:5], ", ") + " and " + itoa(len(list)-5) + " more"
	}
	return strings.Join(list, ", ")
}
