package admin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portcullis/portcullis/controlplane/admin"
	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/resources"
	"github.com/portcullis/portcullis/controlplane/store"
)

// racingStore writes key itself, just before the service's first conditional Put
// of it: a concurrent writer that always wins.
type racingStore struct {
	store.Store
	key   string
	raced bool
}

func (s *racingStore) Put(ctx context.Context, key string, value []byte, expect int64) (int64, error) {
	if key == s.key && !s.raced {
		s.raced = true
		if _, err := s.Store.Put(ctx, key, []byte("written by someone else\n"), store.Any); err != nil {
			return 0, err
		}
	}
	return s.Store.Put(ctx, key, value, expect)
}

const listener = `apiVersion: portcullis.dev/v1alpha1
kind: Listener
metadata: {name: web, namespace: shop}
spec:
  address: 127.0.0.1:8080
`

const cluster = `apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata: {name: api, namespace: shop}
spec:
  endpoints:
    - address: 10.0.0.1:80
`

const route = `apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: web, namespace: shop}
spec:
  listeners: [web]
  rules:
    - forward:
        backends:
          - cluster: api
`

// TestConflictDuringWrites shows what an apply does when a concurrent writer wins
// one of its writes: it stops, says what was and was not written, and the audit
// log records the write that did not happen.
func TestConflictDuringWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	racing := &racingStore{Store: st, key: resources.Key("Cluster", "shop", "api")}
	policy, err := auth.NewPolicy([]auth.Role{{Name: "admin", Rules: []auth.Rule{{Namespaces: []string{"*"}, Kinds: []string{"*"}, Verbs: []auth.Verb{auth.Read, auth.Write}}}}},
		[]auth.Binding{{Role: "admin", Principals: []string{"token:admin"}}})
	if err != nil {
		t.Fatal(err)
	}
	audit := auth.NewAuditLog(st, nil)
	svc, err := admin.New(admin.Options{Store: racing, Policy: policy, Audit: audit})
	if err != nil {
		t.Fatal(err)
	}
	ctx = auth.WithPrincipal(ctx, auth.Principal{Kind: auth.KindToken, Name: "admin"})

	_, err = svc.Apply(ctx, &cpv1.ApplyRequest{Documents: []byte(route + "---\n" + cluster + "---\n" + listener)})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("got %v, want Aborted", err)
	}
	msg := status.Convert(err).Message()
	for _, want := range []string{"Cluster shop/api was changed by someone else", "already written: Listener shop/web created", "not written: Cluster shop/api, Route shop/web"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if kv, err := st.Get(ctx, racing.key); err != nil || string(kv.Value) != "written by someone else\n" {
		t.Fatalf("the winner's write was overwritten: %q %v", kv.Value, err)
	}
	if _, err := st.Get(ctx, resources.Key("Route", "shop", "web")); err == nil {
		t.Fatal("the Route was written after the conflict")
	}
	entries, err := audit.List(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range entries {
		reasons = append(reasons, e.Kind+" "+e.Reason)
	}
	joined := strings.Join(reasons, "\n")
	if len(entries) != 3 || !strings.HasPrefix(reasons[0], "Listener created") || !strings.HasPrefix(reasons[1], "Cluster created") ||
		!strings.Contains(reasons[2], "Cluster not written:") {
		t.Fatalf("audit log:\n%s", joined)
	}
}

func TestServiceRefusesCallsWithoutPrincipal(t *testing.T) {
	svc, err := admin.New(admin.Options{Store: &racingStore{}, Policy: &auth.Policy{}, Audit: auth.NewAuditLog(nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err1 := svc.Apply(ctx, &cpv1.ApplyRequest{Documents: []byte(cluster)})
	_, err2 := svc.List(ctx, &cpv1.ListRequest{})
	_, err3 := svc.Audit(ctx, &cpv1.AuditRequest{})
	for _, err := range []error{err1, err2, err3} {
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("got %v, want Unauthenticated", err)
		}
	}
}

func TestCodeNamesAndStatuses(t *testing.T) {
	for c, want := range map[codes.Code]string{
		codes.PermissionDenied: "PERMISSION_DENIED", codes.OK: "OK", codes.FailedPrecondition: "FAILED_PRECONDITION",
		codes.Aborted: "ABORTED", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	} {
		if got := admin.CodeName(c); got != want {
			t.Errorf("CodeName(%v) = %q, want %q", c, got, want)
		}
	}
	for c, want := range map[codes.Code]int{codes.Aborted: 409, codes.Unauthenticated: 401, codes.PermissionDenied: 403, codes.DataLoss: 500} {
		if got := admin.HTTPStatus(c); got != want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", c, got, want)
		}
	}
}
