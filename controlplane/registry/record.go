package registry

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/portcullis/portcullis/controlplane/store"
)

// Store layout. Both prefixes hold one key per endpoint, "<namespace>/<service>/<address>"
// below them, so a verdict sits at the same relative key as its registration.
const (
	// Prefix holds the registrations, each bound to a lease of its TTL: a
	// registrant that stops renewing disappears without anyone deleting it.
	Prefix = "registry/"
	// HealthPrefix holds the health checker's verdicts on endpoints registered
	// with a health_check_path. They live apart from the registrations so that a
	// renewal (which rewrites the registration whole) and a verdict (written by the
	// leader) never overwrite each other; a verdict names the registration it is
	// about by ID.
	HealthPrefix = "registry-health/"
)

// Limits of a registration, enforced by Register.
const (
	defaultWeight      = 1
	maxWeight          = 1000
	defaultTTLSeconds  = 30
	minTTLSeconds      = 5
	maxTTLSeconds      = 300
	maxHealthPathBytes = 1024
	maxNameBytes       = 253
)

// record is a registration as stored (JSON; the wire type is not the storage
// format, so either can change on its own).
type record struct {
	// ID is new for every fresh registration (and when health_check_path changes)
	// and kept across renewals, so a verdict about an earlier registration of the
	// same address never applies to a later one.
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Address   string `json:"address"`
	Weight    int    `json:"weight"`
	// Healthy is the registrant's own verdict, used when HealthCheckPath is empty.
	Healthy         bool   `json:"healthy"`
	HealthCheckPath string `json:"healthCheckPath,omitempty"`
	RegisteredBy    string `json:"registeredBy"`
	ExpiresUnix     int64  `json:"expiresUnix"`
}

// verdict is the health checker's judgement of one registration.
type verdict struct {
	ID          string `json:"id"` // the record's ID
	Healthy     bool   `json:"healthy"`
	CheckedUnix int64  `json:"checkedUnix"`
	// Detail says why the last probe failed ("status 503", a dial error).
	Detail string `json:"detail,omitempty"`
}

// serviceKey names a registry service.
type serviceKey struct{ namespace, name string }

func (k serviceKey) String() string { return k.namespace + "/" + k.name }

// endpointKey is the key of one endpoint below Prefix or HealthPrefix.
func endpointKey(svc serviceKey, address string) string {
	return svc.namespace + "/" + svc.name + "/" + address
}

// parseEndpointKey splits a store key made of prefix and endpointKey.
func parseEndpointKey(prefix, key string) (serviceKey, string, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return serviceKey{}, "", false
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return serviceKey{}, "", false
	}
	return serviceKey{parts[0], parts[1]}, parts[2], true
}

// decodeRecord reads a stored registration and checks it again, so that a value
// written by another version (or by hand) cannot smuggle in an address Register
// would refuse.
func decodeRecord(kv store.KV, allowLoopback bool) (serviceKey, string, record, error) {
	svc, addr, ok := parseEndpointKey(Prefix, kv.Key)
	if !ok {
		return serviceKey{}, "", record{}, fmt.Errorf("key %q is not %s<namespace>/<service>/<address>", kv.Key, Prefix)
	}
	var r record
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return svc, addr, record{}, fmt.Errorf("registration %q: %w", kv.Key, err)
	}
	canonical, err := checkAddress(r.Address, allowLoopback)
	switch {
	case err != nil:
		return svc, addr, record{}, fmt.Errorf("registration %q: %w", kv.Key, err)
	case r.Namespace != svc.namespace || r.Service != svc.name || canonical != addr:
		return svc, addr, record{}, fmt.Errorf("registration %q names %s/%s %s, not its key", kv.Key, r.Namespace, r.Service, r.Address)
	case r.Weight < 1 || r.Weight > maxWeight:
		return svc, addr, record{}, fmt.Errorf("registration %q: weight %d is not 1..%d", kv.Key, r.Weight, maxWeight)
	case r.ID == "":
		return svc, addr, record{}, fmt.Errorf("registration %q has no id", kv.Key)
	}
	if err := checkHealthPath(r.HealthCheckPath); err != nil {
		return svc, addr, record{}, fmt.Errorf("registration %q: %w", kv.Key, err)
	}
	return svc, addr, r, nil
}

func decodeVerdict(kv store.KV) (serviceKey, string, verdict, error) {
	svc, addr, ok := parseEndpointKey(HealthPrefix, kv.Key)
	if !ok {
		return serviceKey{}, "", verdict{}, fmt.Errorf("key %q is not %s<namespace>/<service>/<address>", kv.Key, HealthPrefix)
	}
	var v verdict
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		return svc, addr, verdict{}, fmt.Errorf("health verdict %q: %w", kv.Key, err)
	}
	return svc, addr, v, nil
}

// checkName accepts what gateway/config accepts as a namespace or name: lower-case
// letters, digits, and '-' or '.' inside. The names become store keys, so '/'
// must never pass.
func checkName(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s is required", field)
	}
	ok := len(s) <= maxNameBytes
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '.') && i > 0 && i < len(s)-1:
		default:
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%s %q is not a DNS label (lower-case letters, digits, '-', '.')", field, s)
	}
	return nil
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// checkAddress accepts an IP literal and a port and returns its canonical form
// (IPv4-mapped IPv6 unmapped). Every proxy dials a registered address, and the
// leader probes it, so addresses that would make them reach something other than
// a service are refused: unspecified, multicast and broadcast addresses name no
// endpoint; link-local ones include cloud metadata services (169.254.169.254);
// loopback would make every proxy dial its own host, and the control plane its own
// etcd client port. Tests, whose apps can only listen on loopback, allow it.
func checkAddress(s string, allowLoopback bool) (string, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", fmt.Errorf("address %q is not ip:port (host names are not registered: a proxy dials what was registered)", s)
	}
	ip := ap.Addr().Unmap()
	switch {
	case ap.Port() == 0:
		return "", fmt.Errorf("address %q has port 0", s)
	case ip.Zone() != "":
		return "", fmt.Errorf("address %q has an IPv6 zone, which means nothing on another host", s)
	case ip.IsUnspecified():
		return "", fmt.Errorf("address %q is unspecified (0.0.0.0, ::) and names no endpoint", s)
	case ip.IsMulticast() || ip == limitedBroadcast:
		return "", fmt.Errorf("address %q is multicast or broadcast", s)
	case ip.IsLinkLocalUnicast():
		return "", fmt.Errorf("address %q is link-local (169.254.0.0/16, fe80::/10), which includes cloud metadata services", s)
	case ip.IsLoopback() && !allowLoopback:
		return "", fmt.Errorf("address %q is loopback: every proxy would dial its own host", s)
	}
	return netip.AddrPortFrom(ip, ap.Port()).String(), nil
}

// checkHealthPath accepts an origin-form path (with an optional query) that
// cannot change the host it is sent to.
func checkHealthPath(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > maxHealthPathBytes {
		return fmt.Errorf("health_check_path is longer than %d bytes", maxHealthPathBytes)
	}
	if p[0] != '/' || strings.HasPrefix(p, "//") {
		return fmt.Errorf("health_check_path %q must start with a single '/'", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f || c == '#' {
			return fmt.Errorf("health_check_path %q holds a space, a control character or '#'", p)
		}
	}
	if _, err := url.ParseRequestURI(p); err != nil {
		return fmt.Errorf("health_check_path %q: %v", p, err)
	}
	return nil
}

// probeURL is the health check's URL for an endpoint; address and path have
// passed checkAddress and checkHealthPath.
func probeURL(address, path string) string { return "http://" + address + path }

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
