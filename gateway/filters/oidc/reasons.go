package oidc

import (
	"net/http"
	"strconv"
	"strings"
)

// reason is why a request was refused or a login failed; reasons[r] gives its
// name (the Reason of the *filter.Error, in access logs and metrics) and status.
type reason int

const (
	reasonNone reason = iota
	reasonNoSession
	reasonBadSession
	reasonSessionExpired
	reasonRefreshFailed
	reasonIdPUnavailable
	reasonBadCallback
	reasonUnknownState
	reasonBadFlow
	reasonStateMismatch
	reasonFlowExpired
	reasonIdPError
	reasonCodeRefused
	reasonNoIDToken
	reasonBadIDToken
	reasonNonceMismatch
	reasonBadRedirect
	reasonBadHost
	reasonMethod
	reasonSessionTooLarge
	numReasons
)

var reasons = [numReasons]struct {
	name   string
	status int
}{
	reasonNone:            {"", 0},
	reasonNoSession:       {"oidc_no_session", http.StatusUnauthorized},
	reasonBadSession:      {"oidc_bad_session", http.StatusUnauthorized},
	reasonSessionExpired:  {"oidc_session_expired", http.StatusUnauthorized},
	reasonRefreshFailed:   {"oidc_refresh_failed", http.StatusUnauthorized},
	reasonIdPUnavailable:  {"oidc_idp_unavailable", http.StatusServiceUnavailable},
	reasonBadCallback:     {"oidc_bad_callback", http.StatusBadRequest},
	reasonUnknownState:    {"oidc_unknown_state", http.StatusBadRequest},
	reasonBadFlow:         {"oidc_bad_flow", http.StatusBadRequest},
	reasonStateMismatch:   {"oidc_state_mismatch", http.StatusBadRequest},
	reasonFlowExpired:     {"oidc_flow_expired", http.StatusBadRequest},
	reasonIdPError:        {"oidc_idp_error", http.StatusUnauthorized},
	reasonCodeRefused:     {"oidc_code_refused", http.StatusUnauthorized},
	reasonNoIDToken:       {"oidc_no_id_token", http.StatusUnauthorized},
	reasonBadIDToken:      {"oidc_bad_id_token", http.StatusUnauthorized},
	reasonNonceMismatch:   {"oidc_nonce_mismatch", http.StatusUnauthorized},
	reasonBadRedirect:     {"oidc_bad_redirect", http.StatusBadRequest},
	reasonBadHost:         {"oidc_bad_host", http.StatusBadRequest},
	reasonMethod:          {"oidc_method_not_allowed", http.StatusBadRequest},
	reasonSessionTooLarge: {"oidc_session_too_large", http.StatusBadGateway},
}

// idpErrors are the error codes an authorization response may carry (RFC 6749
// §4.1.2.1, OpenID Connect Core §3.1.2.6). Each becomes its own Reason
// ("oidc_idp_access_denied"); any other code is "oidc_idp_error", so that a
// client cannot invent metric labels.
var idpErrors = map[string]bool{
	"invalid_request": true, "unauthorized_client": true, "access_denied": true,
	"unsupported_response_type": true, "invalid_scope": true, "server_error": true,
	"temporarily_unavailable": true, "interaction_required": true, "login_required": true,
	"account_selection_required": true, "consent_required": true, "invalid_request_uri": true,
	"invalid_request_object": true, "request_not_supported": true,
	"request_uri_not_supported": true, "registration_not_supported": true,
}

// idpReason returns the Reason and status for an error code from the provider:
// 503 when the provider says it is failing (server_error, temporarily_unavailable),
// 401 for the rest (the user was not logged in: denied, cancelled, misconfigured).
func idpReason(code string) (string, int) {
	st := http.StatusUnauthorized
	if code == "server_error" || code == "temporarily_unavailable" {
		st = http.StatusServiceUnavailable
	}
	if idpErrors[code] {
		return "oidc_idp_" + code, st
	}
	return reasons[reasonIdPError].name, st
}

// claimString renders a claim as a header value: strings as they are, numbers and
// booleans in JSON form, arrays of those joined with ", " (an HTTP list, RFC 9110
// §5.6.1). Objects, nulls, and anything that would not be a valid field value
// (control characters) or would be ambiguous (a comma inside a list element) are
// left out rather than sent in a form the upstream might misread. Same rules as
// the jwt filter's, so that upstreams see one format behind either.
func claimString(v any) (string, bool) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(x)
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			if _, nested := e.([]any); nested {
				return "", false
			}
			p, ok := claimString(e)
			if !ok || strings.Contains(p, ",") {
				return "", false
			}
			parts = append(parts, p)
		}
		s = strings.Join(parts, ", ")
	default:
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return "", false
		}
	}
	return s, true
}

// sameHeader compares header names ASCII case-insensitively with "_" equal to "-":
// CGI, WSGI, Rack and PHP read X-User and X_User as the same HTTP_X_USER, so a
// client-sent X_User must be stripped as surely as X-User.
func sameHeader(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := fold(a[i]), fold(b[i])
		if x != y {
			return false
		}
	}
	return true
}

func fold(c byte) byte {
	switch {
	case c == '_':
		return '-'
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	}
	return c
}
