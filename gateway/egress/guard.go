package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// Resolver looks up the addresses of a host name. *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// LookupNetIP calls f.
func (f ResolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

var _ Resolver = (*net.Resolver)(nil)

// Dialer opens connections. *net.Dialer implements it.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// DialerFunc adapts a function to Dialer.
type DialerFunc func(ctx context.Context, network, address string) (net.Conn, error)

// DialContext calls f.
func (f DialerFunc) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return f(ctx, network, address)
}

var _ Dialer = (*net.Dialer)(nil)

// Address classes refused by the SSRF guard, each a fixed word for the reply's
// detail and the security log.
const (
	ClassUnspecified = "unspecified"    // 0.0.0.0, ::
	ClassLoopback    = "loopback"       // 127.0.0.0/8, ::1
	ClassPrivate     = "private"        // RFC 1918, fc00::/7 (ULA)
	ClassLinkLocal   = "link_local"     // 169.254.0.0/16 (cloud metadata), fe80::/10
	ClassSharedCGNAT = "shared_address" // 100.64.0.0/10 (RFC 6598)
	ClassMulticast   = "multicast"      // 224.0.0.0/4, ff00::/8
	ClassReserved    = "reserved"       // 0.0.0.0/8, 240.0.0.0/4, broadcast, 192.0.0.0/24, 198.18.0.0/15, fec0::/10
)

var refusedPrefixes = []struct {
	p     netip.Prefix
	class string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), ClassReserved},        // "this network" (RFC 791)
	{netip.MustParsePrefix("100.64.0.0/10"), ClassSharedCGNAT}, // RFC 6598
	{netip.MustParsePrefix("192.0.0.0/24"), ClassReserved},     // IETF protocol assignments (RFC 6890)
	{netip.MustParsePrefix("198.18.0.0/15"), ClassReserved},    // benchmarking (RFC 2544)
	{netip.MustParsePrefix("240.0.0.0/4"), ClassReserved},      // reserved, and 255.255.255.255
	{netip.MustParsePrefix("fec0::/10"), ClassReserved},        // deprecated site-local (RFC 3879)
	{netip.MustParsePrefix("64:ff9b::/96"), ""},                // NAT64 (RFC 6052): judged by the IPv4 inside
	{netip.MustParsePrefix("64:ff9b:1::/48"), ClassReserved},   // local-use NAT64 (RFC 8215)
	{netip.MustParsePrefix("2002::/16"), ""},                   // 6to4 (RFC 3056): judged by the IPv4 inside
	{netip.MustParsePrefix("::/96"), ""},                       // IPv4-compatible (deprecated): judged by the IPv4 inside
}

// Classify returns the class of a refused address, or "" for a public one.
// IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible, NAT64 and 6to4 forms are judged
// by the IPv4 address they carry, so that ::ffff:127.0.0.1 is loopback.
func Classify(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return ClassUnspecified
	case a.IsLoopback():
		return ClassLoopback
	case a.IsPrivate():
		return ClassPrivate
	case a.IsLinkLocalUnicast():
		return ClassLinkLocal
	case a.IsMulticast():
		return ClassMulticast
	}
	for _, r := range refusedPrefixes {
		if !r.p.Contains(a) {
			continue
		}
		if r.class != "" {
			return r.class
		}
		b := a.As16()
		var v4 netip.Addr
		if r.p.Bits() == 16 { // 6to4: 2002:AABB:CCDD::/48
			v4 = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		} else {
			v4 = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		}
		return Classify(v4)
	}
	return ""
}

// AddressError is a destination the guard refused: the name (or literal), the
// address and its class.
type AddressError struct {
	Host  string
	Addr  netip.Addr
	Class string
}

func (e *AddressError) Error() string {
	if e.Host == e.Addr.String() {
		return fmt.Sprintf("destination %s is a %s address", e.Host, e.Class)
	}
	return fmt.Sprintf("destination %s resolves to %s, a %s address", e.Host, e.Addr, e.Class)
}

// errNoAddress: the name resolved to nothing.
var errNoAddress = errors.New("no address")

// guard resolves destinations once and checks every answer.
type guard struct {
	resolver Resolver
	timeout  time.Duration
}

// resolve returns the checked addresses of host (a name or an IP literal). A
// name is looked up once, bounded by the resolve timeout; unless allowPrivate,
// an answer with any refused address refuses the whole destination (a mixed
// answer is how a rebinding attack hedges). The caller dials these addresses
// and never resolves host again.
func (g *guard) resolve(ctx context.Context, host string, allowPrivate bool) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a.WithZone("")}
	} else {
		lctx, cancel := context.WithTimeout(ctx, g.timeout)
		found, err := g.resolver.LookupNetIP(lctx, "ip", host)
		cancel()
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, errNoAddress
		}
		addrs = found
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if !allowPrivate {
			if class := Classify(a); class != "" {
				return nil, &AddressError{Host: host, Addr: a, Class: class}
			}
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}
