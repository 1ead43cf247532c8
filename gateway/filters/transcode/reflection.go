package transcode

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/portcullis/portcullis/gateway/filters/internal/grpcupstream"
	"github.com/portcullis/portcullis/translate"
	"github.com/portcullis/portcullis/translate/descriptors"
)

const (
	// DefaultRefreshInterval is how often descriptors are fetched again.
	DefaultRefreshInterval = 5 * time.Minute
	// MinRefreshInterval and MaxRefreshInterval bound reflection.refreshInterval.
	MinRefreshInterval = time.Second
	MaxRefreshInterval = 24 * time.Hour
	// reflectionTimeout bounds one fetch, so that a stuck upstream holds
	// neither the refresher nor Close.
	reflectionTimeout = 10 * time.Second
	// firstRetry is the wait after a failed fetch; it doubles up to the
	// refresh interval, so that a service that was down at start is found soon.
	firstRetry = time.Second
	// cacheSubdir holds the last fetched descriptor set of each filter under
	// the data directory, so that a reload or restart serves at once.
	cacheSubdir = "transcode-reflection"
	// maxCachedSetBytes bounds a cached descriptor set read back.
	maxCachedSetBytes = 64 << 20
)

// States of ReflectionStatus.State.
const (
	// StatePending: no descriptors yet; matching requests get 503.
	StatePending = "pending"
	// StateServing: the latest descriptors applied whole.
	StateServing = "serving"
	// StateRetaining: serving, with bindings that a breaking change would have
	// broken kept from earlier descriptors (ReflectionStatus.Retained).
	StateRetaining = "retaining"
)

// ReflectionStatus is the state of a filter whose descriptors come from server
// reflection, in a form a metrics exporter or an admin page can read: the
// gateway's observer has no hook for filter metrics yet, so it is exposed by
// the filter's ReflectionStatus method and logged on every change.
type ReflectionStatus struct {
	Route   string `json:"route"`
	Cluster string `json:"cluster"`
	// State is StatePending, StateServing or StateRetaining.
	State string `json:"state"`
	// Digest is the SHA-256 of the descriptor set being served (canonical
	// form, descriptors.Digest); empty while pending.
	Digest string `json:"digest,omitempty"`
	// FromCache: the descriptors were read from the data directory at build
	// and no fetch has succeeded since.
	FromCache bool `json:"fromCache,omitempty"`
	// Generation counts the descriptor sets applied (1 for the first).
	Generation uint64 `json:"generation"`
	// BreakingChanges counts applied changes that removed or retained bindings.
	BreakingChanges uint64 `json:"breakingChanges"`
	// Bindings is the number of bindings served; Retained names the ones kept
	// from earlier descriptors, with why.
	Bindings int      `json:"bindings"`
	Retained []string `json:"retained,omitempty"`
	// LastSuccess is the end of the last fetch that succeeded; LastChange the
	// time descriptors with a new digest were applied.
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	LastChange  time.Time `json:"lastChange,omitzero"`
	// ConsecutiveFailures counts fetches (or applications) that failed since
	// the last success; LastError says why the last one did.
	ConsecutiveFailures int    `json:"consecutiveFailures"`
	LastError           string `json:"lastError,omitempty"`
}

// liveSource keeps a transcoder compiled from the descriptors the cluster's
// reflection service gives, refreshed in the background. Requests read it with
// one atomic load; a refresh builds a whole new transcoder and swaps it in.
type liveSource struct {
	route, cluster string
	inv            grpcupstream.Invoker
	services       []string
	rules          map[string]*annotations.HttpRule
	opts           translate.Options
	interval       time.Duration
	cachePath      string
	log            *slog.Logger

	current atomic.Pointer[translate.Transcoder]

	mu     sync.Mutex
	status ReflectionStatus

	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

func newLiveSource(route, cluster string, inv grpcupstream.Invoker, services []string, rules map[string]*annotations.HttpRule,
	opts translate.Options, interval time.Duration, dataDir string, log *slog.Logger) *liveSource {
	s := &liveSource{
		route: route, cluster: cluster, inv: inv, services: services, rules: rules, opts: opts, interval: interval,
		log:  log.With("cluster", cluster),
		done: make(chan struct{}),
	}
	s.status = ReflectionStatus{Route: route, Cluster: cluster, State: StatePending}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if dataDir != "" {
		sum := sha256.Sum256([]byte(route + "\n" + cluster + "\n" + strings.Join(services, ",")))
		s.cachePath = filepath.Join(dataDir, cacheSubdir, hex.EncodeToString(sum[:16])+".binpb")
		s.loadCached()
	}
	return s
}

// start runs the refresher. It never blocks: a snapshot's build must not wait
// on the network. Until the first fetch, matching requests get 503.
func (s *liveSource) start() { go s.run() }

func (s *liveSource) run() {
	defer close(s.done)
	retry := firstRetry
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		next := time.Duration(0)
		if err := s.refresh(); err != nil {
			next, retry = retry, min(retry*2, s.interval)
		} else {
			// ±10% so that gateways started together do not fetch together.
			next, retry = s.interval-s.interval/10+rand.N(s.interval/5+1), firstRetry
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

// Close stops the refresher and waits for it.
func (s *liveSource) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
	})
	return nil
}

// Status returns a copy of the state.
func (s *liveSource) Status() ReflectionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Retained = append([]string(nil), st.Retained...)
	return st
}

// refresh fetches the descriptors and applies them when their digest changed.
func (s *liveSource) refresh() error {
	ctx, cancel := context.WithTimeout(s.ctx, reflectionTimeout)
	defer cancel()
	fds, err := descriptors.FetchReflection(ctx, s.inv, s.cluster, s.services)
	if err != nil {
		if s.ctx.Err() != nil {
			return err // closing: not a failure of the service
		}
		return s.failed(fmt.Errorf("fetching descriptors by server reflection: %w", err))
	}
	digest := descriptors.Digest(fds)
	s.mu.Lock()
	same := digest == s.status.Digest
	if same {
		s.status.LastSuccess, s.status.ConsecutiveFailures, s.status.LastError, s.status.FromCache = time.Now(), 0, "", false
	}
	s.mu.Unlock()
	if same {
		return nil
	}
	if err := s.apply(fds, digest, false); err != nil {
		return s.failed(err)
	}
	s.persist(fds)
	return nil
}

// apply compiles fds against the current transcoder (translate.Evolve's
// policy) and swaps the result in.
func (s *liveSource) apply(fds *descriptorpb.FileDescriptorSet, digest string, fromCache bool) error {
	set, err := descriptors.FromFileDescriptorSet(fds)
	if err != nil {
		return fmt.Errorf("descriptors %.12s: %w", digest, err)
	}
	services := make([]protoreflect.ServiceDescriptor, 0, len(s.services))
	for _, name := range s.services {
		sd, err := set.Service(name)
		if err != nil {
			return fmt.Errorf("descriptors %.12s: %w", digest, err)
		}
		services = append(services, sd)
	}
	opts := s.opts
	opts.Resolver = set.Resolver()
	prev := s.current.Load()
	t, change, err := translate.Evolve(prev, services, s.rules, opts)
	if err != nil {
		return fmt.Errorf("descriptors %.12s not applied, the previous ones keep serving: %w", digest, err)
	}
	s.current.Store(t)
	now := time.Now()
	s.mu.Lock()
	st := &s.status
	st.Digest, st.FromCache, st.Generation, st.LastChange = digest, fromCache, st.Generation+1, now
	if !fromCache {
		st.LastSuccess, st.ConsecutiveFailures, st.LastError = now, 0, ""
	}
	st.Bindings, st.Retained = len(t.Routes()), change.Retained
	st.State = StateServing
	if len(change.Retained) > 0 {
		st.State = StateRetaining
	}
	if prev != nil && change.Breaking() {
		st.BreakingChanges++
	}
	gen := st.Generation
	s.mu.Unlock()

	attrs := []any{"digest", digest, "generation", gen, "bindings", len(t.Routes()), "fromCache", fromCache,
		"added", change.Added, "removed", change.Removed, "retained", change.Retained, "failed", change.Failed}
	switch {
	case prev != nil && change.Breaking():
		s.log.Warn("transcode: breaking change in the service's descriptors; removed bindings are dropped, broken ones keep their previous form",
			append([]any{"event", "transcode_breaking_change"}, attrs...)...)
	case len(change.Failed) > 0:
		s.log.Warn("transcode: descriptors applied, some bindings do not compile and are left out", attrs...)
	default:
		s.log.Info("transcode: descriptors applied", attrs...)
	}
	return nil
}

func (s *liveSource) failed(err error) error {
	s.mu.Lock()
	s.status.ConsecutiveFailures++
	s.status.LastError = err.Error()
	n := s.status.ConsecutiveFailures
	serving := s.status.Digest
	s.mu.Unlock()
	s.log.Warn("transcode: descriptors not refreshed", "event", "transcode_reflection_failed", "err", err,
		"consecutiveFailures", n, "servingDigest", serving)
	return err
}

// loadCached installs the descriptor set a previous build fetched, so that a
// reload or restart serves at once; the refresher checks it right away.
func (s *liveSource) loadCached() {
	f, err := os.Open(s.cachePath)
	if err != nil {
		return
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxCachedSetBytes+1))
	if err != nil || len(raw) > maxCachedSetBytes {
		return
	}
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &fds); err != nil {
		s.log.Warn("transcode: ignoring an unreadable cached descriptor set", "path", s.cachePath, "err", err)
		return
	}
	if err := s.apply(&fds, descriptors.Digest(&fds), true); err != nil {
		s.log.Warn("transcode: ignoring a cached descriptor set", "path", s.cachePath, "err", err)
	}
}

// persist writes fds where loadCached finds it (write, then rename: a reader
// never sees half a file).
func (s *liveSource) persist(fds *descriptorpb.FileDescriptorSet) {
	if s.cachePath == "" {
		return
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(fds)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(s.cachePath), 0o700)
	}
	if err == nil {
		tmp := s.cachePath + ".tmp"
		if err = os.WriteFile(tmp, raw, 0o600); err == nil {
			err = os.Rename(tmp, s.cachePath)
		}
	}
	if err != nil {
		s.log.Warn("transcode: could not keep the descriptor set in the data directory", "path", s.cachePath, "err", err)
	}
}

// writePending answers a request that arrives before any descriptors: 503 with
// a google.rpc.Status JSON body saying why.
func (s *liveSource) writePending(w http.ResponseWriter) {
	st := s.Status()
	msg := fmt.Sprintf("the descriptors of cluster %q have not been fetched by server reflection yet", s.cluster)
	if st.LastError != "" {
		msg += " (last attempt: " + st.LastError + ")"
	}
	b, err := json.Marshal(map[string]any{"code": int(codes.Unavailable), "message": msg, "details": []any{}})
	if err != nil {
		b = []byte(`{"code":14,"message":"descriptors not fetched yet","details":[]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write(b)
}
