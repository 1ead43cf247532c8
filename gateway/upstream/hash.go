package upstream

import (
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Hashes here must be the same in every gateway process (two ingress replicas
// must send a key to the same endpoint), so hash/maphash, whose seed is random
// per process, is not used: keys and ring points are hashed with 64-bit FNV-1a
// followed by the murmur3 finaliser, which gives FNV's poorly mixed output the
// avalanche that ring points and table indexes need.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return mix64(h)
}

func hashBytes(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return mix64(h)
}

// mix64 is the murmur3 64-bit finaliser.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// rehash derives the key for a further try, when the first choice was excluded.
func rehash(key uint64, try int) uint64 {
	if try == 0 {
		return key
	}
	return mix64(key + uint64(try)*0x9e3779b97f4a7c15)
}

// Kinds of hash key.
const (
	hashNone = iota
	hashHeader
	hashCookie
	hashSourceIP
)

// hashKey says where a hashing policy finds a request's key.
type hashKey struct {
	kind int
	name string // canonical header name, or cookie name
}

// key returns the hash of the request's key, and false when the request has none
// (then the policy falls back to weighted random). It does not allocate.
func (k *hashKey) key(req *http.Request, client netip.Addr) (uint64, bool) {
	switch k.kind {
	case hashHeader:
		if req == nil {
			return 0, false
		}
		if v := req.Header[k.name]; len(v) > 0 && v[0] != "" {
			return hashString(v[0]), true
		}
	case hashCookie:
		if req == nil {
			return 0, false
		}
		if v, ok := cookieValue(req.Header, k.name); ok && v != "" {
			return hashString(v), true
		}
	case hashSourceIP:
		if client.IsValid() {
			a := client.Unmap().As16() // IPv4 and IPv4-mapped IPv6 are one client
			return hashBytes(a[:]), true
		}
	}
	return 0, false
}

// ---------------------------------------------------------------------------
// ringHash

const (
	ringPointsPerWeight = 100
	maxRingPoints       = 1 << 17 // about 2 MiB of ring; weights are scaled down above it
)

// ring is a ketama-style consistent-hash ring: each endpoint owns
// ringPointsPerWeight points per unit of weight, and a key goes to the owner of
// the first point at or after its hash. When an endpoint leaves, only the keys
// on its points move.
type ring struct {
	hashes   []uint64 // sorted
	owners   []*Endpoint
	fallback *weightedRandom
}

var _ balancer = (*ring)(nil)

func newRing(eps []*Endpoint, fallback *weightedRandom) *ring {
	w := scaledWeights(eps, maxRingPoints/ringPointsPerWeight)
	type point struct {
		h  uint64
		ep *Endpoint
	}
	var pts []point
	buf := make([]byte, 0, 64)
	for i, ep := range eps {
		for v := range w[i] * ringPointsPerWeight {
			// Points are named by address and index, never by position in the
			// list, so an endpoint's points do not move when others come or go.
			buf = append(buf[:0], ep.Addr...)
			buf = append(buf, '#')
			buf = strconv.AppendInt(buf, v, 10)
			pts = append(pts, point{hashBytes(buf), ep})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return strings.Compare(a.ep.Addr, b.ep.Addr) // equal hashes: break ties the same everywhere
	})
	r := &ring{hashes: make([]uint64, len(pts)), owners: make([]*Endpoint, len(pts)), fallback: fallback}
	for i, p := range pts {
		r.hashes[i], r.owners[i] = p.h, p.ep
	}
	return r
}

func (r *ring) pick(key uint64, hasKey bool, try int) *Endpoint {
	if !hasKey {
		return r.fallback.pick(0, false, try)
	}
	key = rehash(key, try)
	lo, hi := 0, len(r.hashes)
	for lo < hi { // first point with hash >= key
		m := int(uint(lo+hi) >> 1)
		if r.hashes[m] < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.hashes) {
		lo = 0 // wrap around
	}
	return r.owners[lo]
}

// ---------------------------------------------------------------------------
// maglev

// maglevSize is the lookup table size, a prime well above the endpoint count
// (Maglev's balance degrades as endpoints approach the table size).
const maglevSize = 65537

// maglev is Google's Maglev consistent hashing (Eisenbud et al., NSDI 2016):
// every endpoint has its own permutation of the table slots, derived from its
// address, and the endpoints take turns claiming their next free preferred slot
// until the table is full. A lookup is one index. Weights are honoured by
// letting an endpoint take a turn only when its accumulated weight allows.
type maglev struct {
	table    []uint32 // slot -> index into eps
	eps      []*Endpoint
	fallback *weightedRandom
}

var _ balancer = (*maglev)(nil)

func newMaglev(eps []*Endpoint, fallback *weightedRandom) *maglev {
	const m = maglevSize
	n := len(eps)
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	credit := make([]int64, n)
	w := scaledWeights(eps, m)
	maxW := slices.Max(w)
	for i, ep := range eps {
		h := hashString(ep.Addr)
		offset[i] = h % m
		skip[i] = mix64(h^0x5bd1e9955bd1e995)%(m-1) + 1
	}
	table := make([]uint32, m)
	const empty = ^uint32(0)
	for i := range table {
		table[i] = empty
	}
	for filled := 0; filled < m; {
		for i := 0; i < n && filled < m; i++ {
			// Weighted turns: each round adds w[i] credit; a turn costs maxW, so
			// the heaviest endpoint takes a slot every round and one of half its
			// weight every other round.
			if credit[i] += w[i]; credit[i] < maxW {
				continue
			}
			credit[i] -= maxW
			for { // m is prime and skip in [1, m), so this walks a full permutation
				slot := (offset[i] + skip[i]*next[i]) % m
				next[i]++
				if table[slot] == empty {
					table[slot] = uint32(i)
					filled++
					break
				}
			}
		}
	}
	return &maglev{table: table, eps: eps, fallback: fallback}
}

func (g *maglev) pick(key uint64, hasKey bool, try int) *Endpoint {
	if !hasKey {
		return g.fallback.pick(0, false, try)
	}
	return g.eps[g.table[rehash(key, try)%maglevSize]]
}
