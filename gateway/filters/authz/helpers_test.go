package authz_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	_ "github.com/portcullis/portcullis/gateway/filters/authz"
)

// event is one security event the filter reported.
type event struct{ kind, remote, detail string }

// events records security events.
type events struct {
	mu  sync.Mutex
	got []event
}

func (e *events) SecurityEvent(kind, remote, detail string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, event{kind, remote, detail})
}

// take returns the events recorded so far and forgets them.
func (e *events) take() []event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.got
	e.got = nil
	return out
}

// build builds an authz filter with cfg, reporting to ev when it is not nil.
func build(t testing.TB, cfg string, ev *events) (filter.Filter, error) {
	t.Helper()
	return filtertest.Build(t, "authz", cfg, filtertest.WithBuild(func(b *filter.Build) {
		if ev != nil {
			b.Events = ev
		}
	}))
}

func mustBuild(t testing.TB, cfg string, ev *events) filter.Filter {
	t.Helper()
	f, err := build(t, cfg, ev)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return f
}

// result is what the client and the upstream saw of one request.
type result struct {
	status    int
	reason    string
	challenge string
	passed    bool // the request reached the upstream
}

func (r result) String() string {
	return fmt.Sprintf("status=%d reason=%s passed=%v challenge=%q", r.status, r.reason, r.passed, r.challenge)
}

// serve runs one request through f, as caller id (nil: anonymous). An error that
// is not a *filter.Error (the core would answer 500) fails the test.
func serve(t testing.TB, f filter.Filter, method, path string, id *filter.Identity) result {
	t.Helper()
	var res result
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		res.passed = true
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	req := httptest.NewRequest(method, "http://api.example.com/", nil)
	req.URL.Path = path // as the listener leaves it: decoded and normalised
	if id != nil {
		req = filter.WithIdentity(req, id)
	}
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, req)
	res.status = rec.Code
	if err != nil {
		var fe *filter.Error
		if !errors.As(err, &fe) {
			t.Fatalf("the filter returned %v, which the core answers with 500", err)
		}
		res.status, res.reason = fe.Status, fe.Reason
	}
	res.challenge = strings.Join(rec.Header().Values("Www-Authenticate"), " | ")
	return res
}

// caller is an identity from issuer with the given claims (sub "user-1").
func caller(issuer string, claims map[string]any) *filter.Identity {
	return &filter.Identity{Source: "jwt", Issuer: issuer, Subject: "user-1", Claims: claims}
}
