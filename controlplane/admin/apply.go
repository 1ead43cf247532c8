package admin

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/controlplane/store"
)

// Apply actions.
const (
	ActionCreated   = "created"
	ActionUpdated   = "updated"
	ActionUnchanged = "unchanged"
)

func itoa(n int) string { return strconv.Itoa(n) }

// planned is one document of an apply with what it would do.
type planned struct {
	incoming
	current  resources.Resource // Version 0: absent
	decision auth.Decision
	result   *cpv1.ApplyResult
}

// Apply validates, authorizes and writes one or more documents. It is all or
// nothing up to the writes: if any document fails to decode, is not authorized,
// would leave its namespace invalid, or names a stale resourceVersion, nothing is
// written. The writes themselves are one conditional Put per document; see
// the README on what happens when a concurrent writer wins one of them.
func (s *Service) Apply(ctx context.Context, req *cpv1.ApplyRequest) (*cpv1.ApplyResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	docs, set, err := decodeRequest(req.GetDocuments())
	if err != nil {
		// Nothing could be authorized: the audit records the attempt, not its content.
		_ = s.record(ctx, who, &cpv1.AuditEntry{Action: "apply", Reason: "refused: the documents do not decode: " + err.Error()})
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	plan := make([]*planned, len(docs))
	for i, d := range docs {
		plan[i] = &planned{incoming: d}
	}
	if err := s.authorizeAll(ctx, who, plan); err != nil {
		return nil, err
	}
	stored, err := s.readNamespaces(ctx, namespacesOf(docs))
	if err != nil {
		return nil, err
	}
	replaced := map[string]bool{}
	for _, p := range plan {
		replaced[p.key()] = true
	}
	if err := validateNamespaces(stored, set, namespacesOf(docs), replaced, nil); err != nil {
		s.recordAll(ctx, who, plan, "refused: the namespace would not be valid: "+err.Error())
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var stale []string
	for _, p := range plan {
		p.current = stored[p.key()]
		if p.expect != 0 && p.expect != p.current.Version {
			stale = append(stale, staleMessage(p))
		}
		p.result = s.result(p, req.GetDryRun())
	}
	if len(stale) > 0 {
		s.recordAll(ctx, who, plan, "refused: conflict: "+strings.Join(stale, "; "))
		return nil, status.Errorf(codes.Aborted, "conflict, nothing was written: %s", strings.Join(stale, "; "))
	}
	resp := &cpv1.ApplyResponse{}
	for _, p := range plan {
		resp.Results = append(resp.Results, p.result)
	}
	if req.GetDryRun() {
		for _, p := range plan {
			if err := s.record(ctx, who, s.entry(p, "dry run: would be "+p.result.Action)); err != nil {
				return nil, err
			}
		}
		return resp, nil
	}
	if err := s.write(ctx, who, plan); err != nil {
		return nil, err
	}
	return resp, nil
}

// authorizeAll decides every document; if any is refused, every document is
// audited (the refused ones with their reason) and nothing is done.
func (s *Service) authorizeAll(ctx context.Context, who auth.Principal, plan []*planned) error {
	var denied []string
	for _, p := range plan {
		p.decision = s.policy.Decide(who, auth.Request{Verb: auth.Write, Kind: p.Kind, Namespace: p.Namespace, Name: p.Name})
		if !p.decision.Allowed {
			denied = append(denied, p.Ref()+": "+p.decision.Reason)
		}
	}
	if len(denied) == 0 {
		return nil
	}
	for _, p := range plan {
		e := s.entry(p, "refused: another document of the same apply is not authorized")
		if !p.decision.Allowed {
			e.Reason = p.decision.Reason
		}
		e.Allowed = false
		_ = s.record(ctx, who, e)
	}
	return status.Errorf(codes.PermissionDenied, "nothing was applied: %s", refs(denied))
}

// recordAll audits every document of a refused apply with one reason.
func (s *Service) recordAll(ctx context.Context, who auth.Principal, plan []*planned, reason string) {
	for _, p := range plan {
		_ = s.record(ctx, who, s.entry(p, reason))
	}
}

// entry is a document's audit record (allowed: it passed authorization, whose
// reason is appended to reason).
func (s *Service) entry(p *planned, reason string) *cpv1.AuditEntry {
	if p.decision.Allowed {
		reason += " [" + p.decision.Reason + "]"
	}
	return &cpv1.AuditEntry{
		Action: "apply", Kind: p.Kind, Namespace: p.Namespace, Name: p.Name,
		Allowed: p.decision.Allowed, Reason: reason,
		BeforeDigest: resources.Digest(p.current.YAML), AfterDigest: resources.Digest(p.YAML),
	}
}

func staleMessage(p *planned) string {
	if p.current.Version == 0 {
		return fmt.Sprintf("%s: resourceVersion %d was given but the resource does not exist (deleted since?)", p.Ref(), p.expect)
	}
	return fmt.Sprintf("%s: resourceVersion %d was given but it is at %d now (changed by someone else)", p.Ref(), p.expect, p.current.Version)
}

// result computes a document's action and diff.
func (s *Service) result(p *planned, dryRun bool) *cpv1.ApplyResult {
	r := &cpv1.ApplyResult{Kind: p.Kind, Namespace: p.Namespace, Name: p.Name, OldVersion: resources.FormatVersion(p.current.Version)}
	switch {
	case p.current.Version == 0:
		r.Action = ActionCreated
	case string(p.current.YAML) == string(p.YAML):
		r.Action = ActionUnchanged
		r.NewVersion = r.OldVersion
	default:
		r.Action = ActionUpdated
	}
	if r.Action != ActionUnchanged {
		from := "/dev/null"
		if p.current.Version != 0 {
			from = fmt.Sprintf("%s (resourceVersion %d)", p.Ref(), p.current.Version)
		}
		to := p.Ref() + " (applied)"
		if dryRun {
			to = p.Ref() + " (dry run)"
		}
		r.Diff = unifiedDiff(from, to, p.current.YAML, p.YAML)
	}
	return r
}

// write stores the changed documents, referenced kinds first. Each write is
// audited before it is made (an entry that cannot be written stops the apply),
// and conditional on the version the apply was checked against. A conflict stops
// the apply: the documents written before it stay written, and the error lists
// what was and was not.
func (s *Service) write(ctx context.Context, who auth.Principal, plan []*planned) error {
	order := append([]*planned(nil), plan...)
	sort.SliceStable(order, func(i, j int) bool { return writeOrder[order[i].Kind] < writeOrder[order[j].Kind] })
	var written []string
	for i, p := range order {
		if p.result.Action == ActionUnchanged {
			if err := s.record(ctx, who, s.entry(p, ActionUnchanged)); err != nil {
				return partial(err, written, order[i:])
			}
			continue
		}
		if err := s.record(ctx, who, s.entry(p, p.result.Action)); err != nil {
			return partial(err, written, order[i:])
		}
		expect := p.current.Version
		if expect == 0 {
			expect = store.MustNotExist
		}
		rev, err := s.st.Put(ctx, p.key(), p.YAML, expect)
		if err != nil {
			// The entry above announced a write that did not happen: say so.
			e := s.entry(p, "not written: "+err.Error())
			e.AfterDigest = e.BeforeDigest
			_ = s.record(ctx, who, e)
			return partial(storeError(p.Ref(), err), written, order[i:])
		}
		p.result.NewVersion = resources.FormatVersion(rev)
		written = append(written, p.Ref()+" "+p.result.Action)
	}
	return nil
}

// partial adds to err what an interrupted apply did and did not write.
func partial(err error, written []string, rest []*planned) error {
	st, _ := status.FromError(err)
	var notWritten []string
	for _, p := range rest {
		if p.result.Action != ActionUnchanged {
			notWritten = append(notWritten, p.Ref())
		}
	}
	msg := st.Message()
	if len(written) > 0 {
		msg += "; already written: " + strings.Join(written, ", ")
	}
	if len(notWritten) > 0 {
		msg += "; not written: " + strings.Join(notWritten, ", ")
	}
	return status.Error(st.Code(), msg)
}
