package filter

import (
	"context"
	"net/http"
	"strconv"
	"strings"
)

// Identity is the authenticated caller of a request. The filter that authenticated
// it (jwt for bearer tokens, oidc for browser sessions) attaches it with
// WithIdentity; filters after it read it with IdentityFrom: rate limits keyed by
// subject or claim, edge authorization rules, the internal token minter.
//
// Claims must be treated as read-only: one map is shared by everything that handles
// the request.
type Identity struct {
	// Source names the filter that authenticated the caller ("jwt", "oidc").
	Source string
	// Issuer is the configured issuer name (not necessarily the iss claim).
	Issuer  string
	Subject string
	Claims  map[string]any
}

type identityKey struct{}

// WithIdentity returns a shallow copy of r whose context carries id.
func WithIdentity(r *http.Request, id *Identity) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
}

// IdentityFrom returns the identity of an authenticated request, or false for an
// unauthenticated one.
func IdentityFrom(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok && id != nil
}

// Claim returns a claim as a string, found as a ClaimPath finds it: by its own
// name, else by a dotted path into nested objects ("realm_access.roles" is not a
// string and yields false; "org.id" may be).
// Strings are returned as they are, numbers in their shortest decimal form and
// booleans as "true"/"false"; arrays and objects yield false.
func (id *Identity) Claim(path string) (string, bool) {
	v, ok := id.lookup(path)
	if !ok {
		return "", false
	}
	switch t := v.(type) {
	case string:
		return t, true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(t), true
	case int64:
		return strconv.FormatInt(t, 10), true
	case int:
		return strconv.Itoa(t), true
	}
	return "", false
}

// ClaimValues returns a claim as a list of strings: an array's string members, or a
// string split on spaces (the OAuth "scope" convention). Missing: nil.
func (id *Identity) ClaimValues(path string) []string {
	v, ok := id.lookup(path)
	if !ok {
		return nil
	}
	switch t := v.(type) {
	case string:
		return strings.Fields(t)
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return t
	}
	if s, ok := id.Claim(path); ok {
		return []string{s}
	}
	return nil
}

// Scopes returns the caller's OAuth scopes: the "scope" claim (space-separated, RFC
// 8693) or, when that is absent, the "scp" claim (a list, as some issuers write it).
func (id *Identity) Scopes() []string {
	if s := id.ClaimValues("scope"); s != nil {
		return s
	}
	return id.ClaimValues("scp")
}

// lookup finds a claim as ClaimPath.Lookup does, for a path given per call
// (NewClaimPath allocates nothing).
func (id *Identity) lookup(path string) (any, bool) {
	if id == nil {
		return nil, false
	}
	return NewClaimPath(path).Lookup(id.Claims)
}
