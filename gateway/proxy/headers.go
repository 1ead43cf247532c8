package proxy

import (
	"net/http"
	"net/netip"
	"strings"
)

// hopByHop are the connection-specific fields of RFC 9110 §7.6.1, plus the
// non-standard ones clients still send. They describe one connection and are never
// forwarded, in either direction.
var hopByHop = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// forwardingHeaders are the ones a client could use to lie about where a request
// came from; they are kept only from trusted proxies.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-Ip"}

// connectionListed reports the field names a Connection header lists (RFC 9110
// §7.6.1: those are hop-by-hop too).
func connectionListed(h http.Header) []string {
	vs := h["Connection"]
	if len(vs) == 0 {
		return nil
	}
	var out []string
	for _, v := range vs {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, http.CanonicalHeaderKey(f))
			}
		}
	}
	return out
}

// copyRequestHeader returns the header to send upstream: every end-to-end field of
// in (value slices shared, never modified), hop-by-hop fields dropped, forwarding
// fields replaced unless the peer is trusted, and X-Forwarded-* set.
func copyRequestHeader(in http.Header, fw *Forwarding, extra int) http.Header {
	out := make(http.Header, len(in)+3+extra)
	listed := connectionListed(in)
	for k, v := range in {
		if hopByHop[k] {
			continue
		}
		out[k] = v
	}
	for _, k := range listed {
		delete(out, k)
	}
	// gRPC needs "TE: trailers" end to end; it is the one TE value worth keeping.
	for _, v := range in["Te"] {
		if strings.Contains(strings.ToLower(v), "trailers") {
			out["Te"] = teTrailers
			break
		}
	}
	if !fw.TrustedPeer {
		for _, k := range forwardingHeaders {
			delete(out, k)
		}
	}
	if fw.PeerIP.IsValid() {
		ip := fw.PeerIP.Unmap().String()
		if prior := out["X-Forwarded-For"]; len(prior) > 0 {
			out["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
		} else {
			out["X-Forwarded-For"] = []string{ip}
		}
	}
	if len(out["X-Forwarded-Proto"]) == 0 {
		out["X-Forwarded-Proto"] = []string{fw.Scheme}
	}
	if len(out["X-Forwarded-Host"]) == 0 && fw.Host != "" {
		out["X-Forwarded-Host"] = []string{fw.Host}
	}
	return out
}

var teTrailers = []string{"trailers"}

// copyResponseHeader copies the end-to-end fields of an upstream response into dst.
func copyResponseHeader(dst, src http.Header) {
	listed := connectionListed(src)
	for k, v := range src {
		if hopByHop[k] {
			continue
		}
		dst[k] = v
	}
	for _, k := range listed {
		delete(dst, k)
	}
}

// Forwarding is what the proxy knows about the client connection of one request.
type Forwarding struct {
	// PeerIP is the address of the direct peer (the TCP connection).
	PeerIP netip.Addr
	// TrustedPeer is true when PeerIP is a trusted proxy whose X-Forwarded-* and
	// Forwarded headers are kept.
	TrustedPeer bool
	// ClientIP is the original client: PeerIP, or, behind trusted proxies, the
	// right-most X-Forwarded-For entry that is not itself a trusted proxy.
	ClientIP netip.Addr
	// Scheme is "http" or "https" as the client connected.
	Scheme string
	// Host is the Host the client asked for.
	Host string
}

// ClientIPFrom walks X-Forwarded-For from the right, skipping trusted proxies, and
// returns the first address that is not one (RFC 7239 §7.4 style trust chain).
// trusted reports whether an address is a trusted proxy.
func ClientIPFrom(peer netip.Addr, h http.Header, trusted func(netip.Addr) bool) netip.Addr {
	if !trusted(peer) {
		return peer
	}
	xff := h["X-Forwarded-For"]
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return client
			}
			client = a
			if !trusted(a) {
				return a
			}
		}
	}
	return client
}
