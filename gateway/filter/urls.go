package filter

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// CheckHTTPSURL checks a URL a filter fetches credentials or keys from (a JWK
// Set, an OpenID Provider), or is redirected to on the way: it must be absolute,
// carry no user information, and use https, or plain http to a loopback IP literal
// only (a local test server, a node-local agent). Over a network, plain http would
// let anyone on the path replace what is fetched or read what is sent. The error
// says what is wrong, for a config error that names the field.
func CheckHTTPSURL(u *url.URL) error {
	switch {
	case u.Host == "" || !u.IsAbs():
		return errors.New("must be an absolute https URL")
	case u.User != nil:
		return errors.New("must not carry user information")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http":
		if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && a.Unmap().IsLoopback() {
			return nil
		}
		return errors.New("must use https (plain http is allowed to loopback addresses only)")
	}
	return fmt.Errorf("scheme %q is not https", u.Scheme)
}
