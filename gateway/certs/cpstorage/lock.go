package cpstorage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
)

// Locks are taken in two steps. Callers of this process queue per name first
// (nameLock.turn), so that at most one of them holds or asks for a name at a
// time and Unlock(name) always releases the one lock this process holds under
// that name, even after a lock was lost and taken again. Only then does the
// caller open a Lock stream, which the control plane answers once the name is
// free among every replica.

// nameLock is this process's queue for one lock name.
type nameLock struct {
	turn chan struct{} // capacity 1: full while a caller holds or is acquiring the name
	refs int           // callers holding or waiting; the entry is dropped at zero
	held *heldLock     // set from a successful Lock until its Unlock
}

// heldLock is the open stream of one held lock.
type heldLock struct {
	name      string
	stream    cpv1.CertStorage_LockClient
	cancel    context.CancelFunc // cuts the stream, which releases the lock too
	ended     chan struct{}      // closed when the control plane ends the stream
	endErr    error              // why it ended (io.EOF: released as asked); set before ended closes
	releasing atomic.Bool
}

// Lock takes the named lock, shared with every proxy of this namespace that
// uses the control plane's storage; it blocks until held or ctx is done. The
// lock stays held after ctx ends, until Unlock.
func (s *Storage) Lock(ctx context.Context, name string) error {
	nl := s.ref(name)
	select {
	case nl.turn <- struct{}{}:
	case <-ctx.Done():
		s.unref(name, nl)
		return fmt.Errorf("cpstorage: lock %q: %w", name, ctx.Err())
	}
	h, err := s.acquire(ctx, name)
	if err != nil {
		<-nl.turn
		s.unref(name, nl)
		return err
	}
	s.mu.Lock()
	nl.held = h
	s.mu.Unlock()
	return nil
}

// Unlock releases a lock taken with Lock on this Storage. A lock that was lost
// meanwhile (its stream ended) is released already; that is not an error.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	nl := s.locks[name]
	if nl == nil || nl.held == nil {
		s.mu.Unlock()
		return fmt.Errorf("cpstorage: unlock %q: not locked through this storage", name)
	}
	h := nl.held
	nl.held = nil
	s.mu.Unlock()
	defer func() {
		<-nl.turn
		s.unref(name, nl)
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	h.release(ctx, s.log)
	return nil
}

// acquire opens a Lock stream for name and waits until the control plane holds
// the lock for it, or ctx ends (which cuts the stream, so nothing stays queued).
func (s *Storage) acquire(ctx context.Context, name string) (*heldLock, error) {
	// The stream must outlive ctx: it is the lock, held until Unlock.
	streamCtx, cancel := context.WithCancel(context.Background())
	stream, err := s.client.Lock(streamCtx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cpstorage: lock %q: %w", name, err)
	}
	stopWaiting := context.AfterFunc(ctx, cancel)
	resp, err := func() (*cpv1.CertLockResponse, error) {
		if err := stream.Send(&cpv1.CertLockRequest{Step: &cpv1.CertLockRequest_Acquire{Acquire: name}}); err != nil {
			_, recvErr := stream.Recv() // Send reports io.EOF; the status is in Recv
			return nil, recvErr
		}
		return stream.Recv()
	}()
	if !stopWaiting() {
		// ctx ended while waiting: the stream is cut (a lock granted just now is
		// released with it).
		cancel()
		return nil, fmt.Errorf("cpstorage: lock %q: %w", name, ctx.Err())
	}
	if err == nil && !resp.GetHeld() {
		err = errors.New("the control plane answered without holding the lock")
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cpstorage: lock %q: %w", name, err)
	}
	h := &heldLock{name: name, stream: stream, cancel: cancel, ended: make(chan struct{})}
	go h.watch(s.log)
	return h, nil
}

// watch waits for the control plane to end the stream: after a release, or
// because the lock is gone (replica stopped, connection lost).
func (h *heldLock) watch(log *slog.Logger) {
	_, err := h.stream.Recv()
	if err == nil {
		err = errors.New("an unexpected message on a held lock's stream")
		h.cancel()
	}
	h.endErr = err
	close(h.ended)
	if !h.releasing.Load() {
		log.Warn("ACME lock lost: the control plane ended its stream before Unlock; another replica may take it",
			"lock", h.name, "err", err)
	}
}

// release asks the control plane to release the lock and waits for it to
// confirm (the stream ends with OK), at most until ctx ends; the stream is then
// cut, which releases the lock in any case.
func (h *heldLock) release(ctx context.Context, log *slog.Logger) {
	h.releasing.Store(true)
	defer h.cancel()
	select {
	case <-h.ended:
		return // lost before: released already, and reported by watch
	default:
	}
	if err := h.stream.Send(&cpv1.CertLockRequest{Step: &cpv1.CertLockRequest_Release{Release: &cpv1.CertLockRelease{}}}); err == nil {
		_ = h.stream.CloseSend()
	}
	select {
	case <-h.ended:
		if !errors.Is(h.endErr, io.EOF) {
			log.Info("ACME lock: the stream ended with an error at release; the lock is released with it", "lock", h.name, "err", h.endErr)
		}
	case <-ctx.Done():
		log.Warn("ACME lock: the control plane did not confirm the release in time; cutting the stream, which releases it",
			"lock", h.name)
	}
}

func (s *Storage) ref(name string) *nameLock {
	s.mu.Lock()
	defer s.mu.Unlock()
	nl := s.locks[name]
	if nl == nil {
		nl = &nameLock{turn: make(chan struct{}, 1)}
		s.locks[name] = nl
	}
	nl.refs++
	return nl
}

func (s *Storage) unref(name string, nl *nameLock) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nl.refs--
	if nl.refs == 0 {
		delete(s.locks, name)
	}
}
