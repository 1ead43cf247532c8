package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// KindToken is a static API token for automation (CI jobs, the development mode's
// admin token), configured by the SHA-256 digest of its value.
const KindToken = "token"

// Proxy roles a bootstrap token may be bound to.
var proxyRoles = map[string]bool{"ingress": true, "egress": true, "sidecar": true}

// ProxyToken is a proxy bootstrap token: the digest of its value and the proxy
// identity it is bound to.
type ProxyToken struct {
	// Name identifies the token in audit records and status ("proxy:<name>").
	Name string
	// SHA256 is the hex SHA-256 digest of the token's value (TokenDigest).
	SHA256 string
	// Role, Namespace and ProxyName are what the proxy may claim in its Hello;
	// ProxyName "*" lets one token serve every proxy of the role in the namespace.
	Role, Namespace, ProxyName string
}

// APIToken is a static bearer token for automation, bound to roles by
// "token:<name>".
type APIToken struct {
	Name   string
	SHA256 string
}

// TokenDigest returns the hex SHA-256 of a token's value: what the configuration
// holds instead of the token.
func TokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewToken returns a fresh random token (256 bits, URL-safe base64).
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// tokenTable finds the principal a token's digest belongs to.
type tokenTable struct {
	entries []tokenEntry
}

type tokenEntry struct {
	digest    [sha256.Size]byte
	principal Principal
}

func newTokenTable(proxies []ProxyToken, apis []APIToken) (*tokenTable, error) {
	t := &tokenTable{}
	var errs []string
	names := map[string]string{}   // principal string -> field path
	digests := map[string]string{} // digest -> field path
	add := func(path string, digest string, p Principal) {
		if p.Name == "" {
			errs = append(errs, path+".name: required")
			return
		}
		if prev, ok := names[p.String()]; ok {
			errs = append(errs, fmt.Sprintf("%s.name: %q is already the name of %s", path, p.Name, prev))
			return
		}
		names[p.String()] = path
		d, err := parseDigest(digest)
		if err != nil {
			errs = append(errs, path+".sha256: "+err.Error())
			return
		}
		if prev, ok := digests[hex.EncodeToString(d[:])]; ok {
			errs = append(errs, fmt.Sprintf("%s.sha256: the same token as %s", path, prev))
			return
		}
		digests[hex.EncodeToString(d[:])] = path
		t.entries = append(t.entries, tokenEntry{digest: d, principal: p})
	}
	for i, pt := range proxies {
		path := fmt.Sprintf("proxyTokens[%d]", i)
		if !proxyRoles[pt.Role] {
			errs = append(errs, fmt.Sprintf("%s.role: %q is not one of ingress, egress, sidecar", path, pt.Role))
		}
		if pt.Namespace == "" {
			errs = append(errs, path+".namespace: required")
		}
		if pt.ProxyName == "" {
			errs = append(errs, path+`.proxyName: required (a gateway or workload name, or "*")`)
		}
		add(path, pt.SHA256, Principal{Kind: KindProxy, Name: pt.Name, ProxyRole: pt.Role, ProxyNamespace: pt.Namespace, ProxyName: pt.ProxyName})
	}
	for i, at := range apis {
		add(fmt.Sprintf("apiTokens[%d]", i), at.SHA256, Principal{Kind: KindToken, Name: at.Name})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return t, nil
}

func parseDigest(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return d, fmt.Errorf("not a hex SHA-256 digest (64 hex digits; see `portctl token digest`)")
	}
	copy(d[:], b)
	return d, nil
}

// lookup returns the principal whose digest matches token's. Every entry is
// compared, in constant time, whether or not an earlier one matched, so the time
// taken says nothing about which entry (if any) matched.
func (t *tokenTable) lookup(token string) (Principal, bool) {
	sum := sha256.Sum256([]byte(token))
	var found Principal
	ok := 0
	for i := range t.entries {
		m := subtle.ConstantTimeCompare(sum[:], t.entries[i].digest[:])
		if m == 1 {
			found = t.entries[i].principal
		}
		ok |= m
	}
	return found, ok == 1
}
