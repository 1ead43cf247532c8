package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/store"
)

// AuditPrefix is the store prefix of the audit log. Entries are keyed by their
// sequence number, zero-padded so that keys sort in sequence order.
const AuditPrefix = "audit/"

const (
	seqDigits = 20 // enough for every int64
	// blockSize is the number of sequences that share all but their last three
	// digits, i.e. one key prefix: an AuditList of at most blockSize entries
	// reads at most two such prefixes.
	blockSize = 1000
	// MaxAuditList is the most entries one List returns.
	MaxAuditList = blockSize
	// DefaultAuditList is what List returns when no limit is given.
	DefaultAuditList = 100
	// maxAppendAttempts bounds retries when other replicas keep taking the next
	// sequence number.
	maxAppendAttempts = 32
)

// AuditKey is the store key of one entry.
func AuditKey(seq int64) string { return fmt.Sprintf("%s%0*d", AuditPrefix, seqDigits, seq) }

// AuditLog is the append-only audit log in the store (SM-DR28). Entries are never
// changed or removed by the control plane. Several replicas may append at once:
// each entry is written only if its key does not exist yet (store.MustNotExist),
// so two replicas never overwrite one another; the loser takes the next number.
// Sequence numbers are therefore dense: 1, 2, 3 ... with no gaps.
type AuditLog struct {
	st  store.Store
	now func() time.Time

	mu   sync.Mutex
	last int64 // highest sequence known to exist; -1 before the first look
}

// NewAuditLog returns the log kept in st. now may be nil (time.Now).
func NewAuditLog(st store.Store, now func() time.Time) *AuditLog {
	if now == nil {
		now = time.Now
	}
	return &AuditLog{st: st, now: now, last: -1}
}

// Append stores e with the next sequence number and the current time (both set
// on e) and returns the sequence.
func (l *AuditLog) Append(ctx context.Context, e *cpv1.AuditEntry) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last < 0 {
		last, err := l.findLast(ctx, 0)
		if err != nil {
			return 0, err
		}
		l.last = last
	}
	e.TimeUnixNano = l.now().UnixNano()
	for range maxAppendAttempts {
		e.Sequence = l.last + 1
		b, err := protojson.Marshal(e)
		if err != nil {
			return 0, fmt.Errorf("audit: encoding entry: %w", err)
		}
		_, err = l.st.Put(ctx, AuditKey(e.Sequence), b, store.MustNotExist)
		if err == nil {
			l.last = e.Sequence
			return e.Sequence, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return 0, fmt.Errorf("audit: writing entry %d: %w", e.Sequence, err)
		}
		// Another replica appended: skip past everything it (and others) wrote.
		last, err := l.findLast(ctx, e.Sequence)
		if err != nil {
			return 0, err
		}
		l.last = last
	}
	return 0, fmt.Errorf("audit: no free sequence number after %d attempts (other replicas keep appending)", maxAppendAttempts)
}

// findLast returns the highest existing sequence, given that from exists (0
// always "exists"). Sequences are dense, so it probes from+1, from+2, from+4 ...
// until one is missing, then bisects: O(log n) reads, without listing the log.
func (l *AuditLog) findLast(ctx context.Context, from int64) (int64, error) {
	lo, step := from, int64(1)
	var hi int64
	for {
		ok, err := l.exists(ctx, lo+step)
		if err != nil {
			return 0, err
		}
		if !ok {
			hi = lo + step
			break
		}
		lo += step
		step *= 2
	}
	for hi-lo > 1 { // lo exists, hi does not
		mid := lo + (hi-lo)/2
		ok, err := l.exists(ctx, mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

func (l *AuditLog) exists(ctx context.Context, seq int64) (bool, error) {
	_, err := l.st.Get(ctx, AuditKey(seq))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("audit: reading entry %d: %w", seq, err)
	}
}

// List returns up to limit entries with a sequence above after, in order (limit 0:
// DefaultAuditList; at most MaxAuditList).
func (l *AuditLog) List(ctx context.Context, after int64, limit int) ([]*cpv1.AuditEntry, error) {
	if after < 0 {
		return nil, fmt.Errorf("audit: after_sequence %d is negative", after)
	}
	if limit <= 0 {
		limit = DefaultAuditList
	}
	limit = min(limit, MaxAuditList)
	first, last := after+1, after+int64(limit)
	var out []*cpv1.AuditEntry
	// The range spans at most two blocks of blockSize consecutive sequences, each
	// one key prefix.
	for block := first / blockSize; block <= last/blockSize; block++ {
		prefix := AuditKey(block * blockSize)
		prefix = prefix[:len(prefix)-3]
		kvs, _, err := l.st.List(ctx, prefix)
		if err != nil {
			return nil, fmt.Errorf("audit: listing: %w", err)
		}
		for _, kv := range kvs {
			seq, err := strconv.ParseInt(kv.Key[len(AuditPrefix):], 10, 64)
			if err != nil || seq < first || seq > last {
				continue
			}
			e := &cpv1.AuditEntry{}
			if err := protojson.Unmarshal(kv.Value, e); err != nil {
				return nil, fmt.Errorf("audit: entry %d is corrupt: %w", seq, err)
			}
			out = append(out, e)
		}
	}
	return out, nil
}
