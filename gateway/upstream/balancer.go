package upstream

import (
	"math/bits"
	"sync/atomic"

	"github.com/portcullis/portcullis/gateway/config"
)

// balancer chooses among the eligible endpoints of one snapshot. It is built
// when the eligible set changes and is then read-only apart from its atomic
// counters, so pick is safe for concurrent use without locks.
//
// key/hasKey are the request's hash key (hashing policies only); try is 0 for
// the first choice and counts up when Pick asks again because the choice was
// excluded or went stale.
type balancer interface {
	pick(key uint64, hasKey bool, try int) *Endpoint
}

// newBalancer builds the policy's balancer over eps (non-empty, sorted by Addr).
func (c *Cluster) newBalancer(eps []*Endpoint) balancer {
	switch c.policy {
	case config.LBLeastRequest:
		return &leastRequest{sample: newWeightedRandom(eps, c.rand)}
	case config.LBRandom:
		return newWeightedRandom(eps, c.rand)
	case config.LBRingHash:
		return newRing(eps, newWeightedRandom(eps, c.rand))
	case config.LBMaglev:
		return newMaglev(eps, newWeightedRandom(eps, c.rand))
	}
	return newRoundRobin(eps, c.rand())
}

// bounded maps a uniform 64-bit value onto [0, n) with a multiply instead of a
// division (Lemire); the bias is below n/2^64.
func bounded(r, n uint64) uint64 {
	hi, _ := bits.Mul64(r, n)
	return hi
}

// ---------------------------------------------------------------------------
// roundRobin

// maxSchedule bounds a round-robin schedule. Weights whose sum exceeds it are
// scaled down proportionally (every endpoint keeps at least one slot), which
// keeps the table small and its build cheap at the price of rounding very
// uneven weights.
const maxSchedule = 1 << 12

// roundRobin is smooth weighted round robin (nginx's algorithm), run once per
// eligible set to fill a schedule in which each endpoint appears Weight times,
// spread out rather than in runs (weights a:1 b:1 c:3 give c a c b c, not
// a b c c c); Pick walks it with one atomic counter.
type roundRobin struct {
	sched []*Endpoint
	next  atomic.Uint64
}

var _ balancer = (*roundRobin)(nil)

func newRoundRobin(eps []*Endpoint, start uint64) *roundRobin {
	w := scaledWeights(eps, maxSchedule)
	var total int64
	for _, x := range w {
		total += x
	}
	rr := &roundRobin{}
	if total == int64(len(eps)) {
		rr.sched = eps // equal weights: the order is the schedule
	} else {
		// Each step every endpoint gains its weight, the richest is chosen and
		// pays the total. After total steps every endpoint has been chosen
		// exactly its weight times and the state is back at zero. O(total x n),
		// which maxSchedule bounds; equal weights take the path above.
		rr.sched = make([]*Endpoint, total)
		cur := make([]int64, len(eps))
		for k := range rr.sched {
			best := 0
			for i := range cur {
				cur[i] += w[i]
				if cur[i] > cur[best] {
					best = i
				}
			}
			cur[best] -= total
			rr.sched[k] = eps[best]
		}
	}
	// Start at a random place so that gateways restarted together, or a rebuilt
	// snapshot, do not all send their next request to the same endpoint.
	rr.next.Store(start)
	return rr
}

// scaledWeights returns the endpoints' weights divided by their greatest common
// divisor and, if their sum still exceeds limit, scaled down to about limit.
func scaledWeights(eps []*Endpoint, limit int64) []int64 {
	w := make([]int64, len(eps))
	var g, total int64
	for i, ep := range eps {
		w[i] = int64(max(ep.Weight, 1))
		g = gcd(g, w[i])
	}
	for i := range w {
		w[i] /= g
		total += w[i]
	}
	if total > limit {
		for i := range w {
			w[i] = max(1, w[i]*limit/total)
		}
	}
	return w
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (r *roundRobin) pick(uint64, bool, int) *Endpoint {
	n := r.next.Add(1)
	return r.sched[n%uint64(len(r.sched))]
}

// ---------------------------------------------------------------------------
// random

// weightedRandom picks with probability proportional to weight in O(1) from one
// random value, with Vose's alias method: column i is drawn uniformly, then
// kept with probability prob[i] or swapped for alias[i]. With equal weights it
// is one multiply.
type weightedRandom struct {
	eps   []*Endpoint
	prob  []uint64 // in [0, 2^32]: keep column i when the coin is below it; nil when weights are equal
	alias []uint32
	rand  func() uint64
}

var _ balancer = (*weightedRandom)(nil)

func newWeightedRandom(eps []*Endpoint, rnd func() uint64) *weightedRandom {
	r := &weightedRandom{eps: eps, rand: rnd}
	w := scaledWeights(eps, 1<<20) // bounded, so w*n below stays far from overflow
	n := int64(len(eps))
	var total int64
	for _, x := range w {
		total += x
	}
	if total == n {
		return r
	}
	// Scale so that the average column holds exactly total: column i starts with
	// w[i]*n and is "full" at total. Integers keep the build exact.
	r.prob = make([]uint64, n)
	r.alias = make([]uint32, n)
	v := make([]int64, n)
	var small, large []int
	for i, x := range w {
		v[i] = x * n
		if v[i] < total {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		r.prob[s] = uint64(v[s]) << 32 / uint64(total)
		r.alias[s] = uint32(l)
		// l gives column s what it lacks.
		if v[l] -= total - v[s]; v[l] < total {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	for _, i := range append(small, large...) {
		r.prob[i] = 1 << 32 // full (up to rounding): always keep
	}
	return r
}

func (r *weightedRandom) pick(uint64, bool, int) *Endpoint { return r.eps[r.index(r.rand())] }

// index maps a random value to an endpoint index: the high 32 bits choose the
// column, the low 32 bits toss the coin.
func (r *weightedRandom) index(x uint64) int {
	i := (x >> 32) * uint64(len(r.eps)) >> 32
	if r.prob != nil && x&0xffffffff >= r.prob[i] {
		return int(r.alias[i])
	}
	return int(i)
}

// ---------------------------------------------------------------------------
// leastRequest

// leastRequest is the power of two choices: draw two distinct endpoints by
// weight and take the one with fewer requests in flight per unit of weight. When
// both are idle the first draw wins, so an idle cluster is balanced by weight
// and a loaded one by load, without a global scan.
type leastRequest struct {
	sample *weightedRandom
}

var _ balancer = (*leastRequest)(nil)

func (l *leastRequest) pick(uint64, bool, int) *Endpoint {
	s := l.sample
	n := len(s.eps)
	if n == 1 {
		return s.eps[0]
	}
	r := s.rand()
	i := s.index(r)
	var j int
	if s.prob == nil {
		// One draw gives both: j from the low half, shifted past i, is distinct.
		j = int(bounded(r<<32, uint64(n-1)))
		if j >= i {
			j++
		}
	} else {
		j = s.index(s.rand())
		if j == i {
			j = (i + 1) % n
		}
	}
	a, b := s.eps[i], s.eps[j]
	// a.inflight/a.Weight <= b.inflight/b.Weight, cross-multiplied.
	if a.inflight.Load()*int64(b.Weight) <= b.inflight.Load()*int64(a.Weight) {
		return a
	}
	return b
}
