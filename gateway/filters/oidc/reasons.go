package oidc

import "net/http"

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
