package ratelimit

import (
	"encoding/binary"
	"hash/maphash"
	"net/http"
	"net/netip"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/proxy"
)

type keyMode uint8

const (
	byClientIP keyMode = iota
	byHeader
	bySubject
	byClaim
)

// bucket returns the entry of the request's key, the shared entry for a request
// without one, or the error that refuses it (missingKey: refuse). For key-prefix
// plans it sets *p to the key's plan.
func (l *limiter) bucket(w http.ResponseWriter, r *http.Request, id *filter.Identity, p *int32) (*entry, error) {
	var k key
	switch l.mode {
	case byClientIP:
		a := clientIP(r)
		if !a.IsValid() {
			return l.shared, nil
		}
		k = l.addrKey(a)
	case byHeader:
		v := r.Header[l.header]
		if len(v) == 0 || v[0] == "" {
			return l.missing(w, id)
		}
		if len(l.prefixes) > 0 {
			*p = l.prefixPlan(v[0])
		}
		k = l.digest.of(v[0])
	case bySubject:
		if id == nil || id.Subject == "" {
			return l.missing(w, id)
		}
		k = l.digest.scoped(id.Issuer, id.Subject)
	case byClaim:
		if id == nil {
			return l.missing(w, id)
		}
		v, ok := id.Claim(l.claim)
		if !ok || v == "" {
			return l.missing(w, id)
		}
		k = l.digest.scoped(id.Issuer, v)
	}
	return l.table.get(k, *p, &l.plans[*p]), nil
}

// missing handles a request without a key: the shared bucket, or with missingKey:
// refuse an error whose status says what is missing. No identity at all is an
// authentication problem (401, with a Bearer challenge as RFC 9110 §15.5.2
// requires); an authenticated caller whose token lacks the subject or claim cannot
// fix that by retrying or re-authenticating the same way (403); a missing header
// is the request's own fault (400).
func (l *limiter) missing(w http.ResponseWriter, id *filter.Identity) (*entry, error) {
	switch {
	case !l.refuseMissing:
		return l.shared, nil
	case l.mode == byHeader:
		return nil, &filter.Error{Status: http.StatusBadRequest, Reason: ReasonMissingKey}
	case id == nil:
		if h := w.Header(); len(h["Www-Authenticate"]) == 0 {
			h["Www-Authenticate"] = []string{"Bearer"}
		}
		return nil, &filter.Error{Status: http.StatusUnauthorized, Reason: ReasonUnauthenticated}
	}
	return nil, &filter.Error{Status: http.StatusForbidden, Reason: ReasonMissingClaim}
}

// addrKey is the key of a client address: IPv4 and IPv4-mapped IPv6 are one
// client, grouped by ipv4PrefixLength; IPv6 by ipv6PrefixLength. A masked IPv6
// prefix of at most /64 has its low 64 bits zero and a v4-mapped key has 0xffff in
// them, so the two families never share a key.
func (l *limiter) addrKey(a netip.Addr) key {
	a = a.Unmap()
	bits := l.v6Bits
	if a.Is4() {
		bits = l.v4Bits
	}
	if pfx, err := a.Prefix(bits); err == nil {
		a = pfx.Addr()
	}
	return key(a.As16())
}

// clientIP is the client's address as the core determined it (behind trusted
// proxies, from X-Forwarded-For), or the peer's address outside the core.
func clientIP(r *http.Request) netip.Addr {
	if info := proxy.InfoFrom(r.Context()); info != nil && info.ClientIP.IsValid() {
		return info.ClientIP
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr()
	}
	a, _ := netip.ParseAddr(r.RemoteAddr)
	return a
}

// digester turns client-chosen strings (header values such as API keys, subjects,
// claim values) into keys with two independent keyed hashes. The seeds are random
// per snapshot and never leave the process, so clients cannot choose values that
// collide, and the table never holds a secret in clear: what an API key becomes
// cannot be turned back into it, nor compared with a digest of another process.
type digester struct{ a, b maphash.Seed }

func newDigester() digester { return digester{maphash.MakeSeed(), maphash.MakeSeed()} }

// of is the key of a header value.
func (d digester) of(v string) key {
	return join(maphash.String(d.a, v), maphash.String(d.b, v))
}

// scoped is the key of v within scope (an issuer): the scope's length goes first,
// so that ("ab", "c") and ("a", "bc") are different inputs, and the same subject
// from two issuers never shares a bucket.
func (d digester) scoped(scope, v string) key {
	return join(scopedSum(d.a, scope, v), scopedSum(d.b, scope, v))
}

func scopedSum(seed maphash.Seed, scope, v string) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(scope)))
	_, _ = h.Write(n[:])
	_, _ = h.WriteString(scope)
	_, _ = h.WriteString(v)
	return h.Sum64()
}

func join(x, y uint64) key {
	var k key
	binary.LittleEndian.PutUint64(k[:8], x)
	binary.LittleEndian.PutUint64(k[8:], y)
	return k
}
