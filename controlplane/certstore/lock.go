package certstore

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/store/certstorage"
)

// Lock holds one lock for the life of the stream: acquire, held, then release
// (or the end of the stream, however it ends) frees it.
func (s *Service) Lock(stream cpv1.CertStorage_LockServer) error {
	ctx := stream.Context()
	p, err := s.authorize(ctx, rpcLock)
	if err != nil {
		return err
	}
	first, err := s.awaitAcquire(stream)
	if err != nil {
		return err
	}
	name := first.GetAcquire()
	if first.GetRelease() != nil {
		return s.refuse(rpcLock, p, codes.InvalidArgument, "release: the stream holds no lock; send acquire first")
	}
	if err := checkLockName(name); err != nil {
		return s.refuse(rpcLock, p, codes.InvalidArgument, "%v", err)
	}
	ns := p.ProxyNamespace
	if err := s.beginLock(ns); err != nil {
		if status.Code(err) == codes.ResourceExhausted {
			return s.refuse(rpcLock, p, codes.ResourceExhausted, "%v", err)
		}
		return err
	}
	defer s.endLock(ns)

	// The lock is taken with a context that ends with the stream or with the
	// service, so a proxy that gives up waiting (or goes away) stops waiting here.
	lockCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	// A certstorage per stream: its Unlock then releases exactly this stream's
	// lock, whatever other streams of the namespace hold.
	cs := certstorage.New(s.st, KeyPrefix+ns)
	if err := cs.Lock(lockCtx, name); err != nil {
		if s.ctx.Err() != nil {
			return status.Error(codes.Unavailable, "certstore: the control plane is shutting down")
		}
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		return status.Errorf(codes.Unavailable, "certstore: lock %q: %v", name, err)
	}
	s.m.held.WithLabelValues(ns).Inc()
	defer s.m.held.WithLabelValues(ns).Dec()
	defer s.unlock(cs, p, name)

	if err := stream.Send(&cpv1.CertLockResponse{Held: true}); err != nil {
		return err
	}
	return s.holdUntilReleased(lockCtx, stream, p, name)
}

// awaitAcquire reads the stream's first message within AcquireTimeout.
func (s *Service) awaitAcquire(stream cpv1.CertStorage_LockServer) (*cpv1.CertLockRequest, error) {
	type result struct {
		req *cpv1.CertLockRequest
		err error
	}
	ch := make(chan result, 1)
	// When the wait ends early, returning from the handler ends the stream,
	// which ends this Recv.
	go func() {
		req, err := stream.Recv()
		ch <- result{req, err}
	}()
	t := time.NewTimer(s.opts.AcquireTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if errors.Is(r.err, io.EOF) {
			return nil, status.Error(codes.InvalidArgument, "certstore: the stream ended before acquire")
		}
		return r.req, r.err
	case <-t.C:
		return nil, status.Errorf(codes.DeadlineExceeded, "certstore: no acquire within %s of opening the stream", s.opts.AcquireTimeout)
	case <-s.ctx.Done():
		return nil, status.Error(codes.Unavailable, "certstore: the control plane is shutting down")
	}
}

// holdUntilReleased waits for the proxy's release (or half-close), the end of
// the stream, or the service's Close. Only a release asked for ends the stream
// with OK; the caller's deferred unlock frees the lock in every case.
func (s *Service) holdUntilReleased(ctx context.Context, stream cpv1.CertStorage_LockServer, p auth.Principal, name string) error {
	released := make(chan error, 1)
	go func() {
		req, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			released <- nil // half-closed: a release
		case err != nil:
			released <- err
		case req.GetRelease() == nil:
			released <- status.Error(codes.InvalidArgument, "certstore: a held lock's stream accepts only release")
		default:
			released <- nil
		}
	}()
	select {
	case err := <-released:
		if err != nil && status.Code(err) != codes.InvalidArgument {
			s.log.Info("certstore: lock released as its stream ended", "lock", name, "principal", p.String(), "err", err)
		}
		return err
	case <-ctx.Done():
		if s.ctx.Err() != nil {
			s.log.Info("certstore: lock released at shutdown", "lock", name, "principal", p.String())
			return status.Error(codes.Unavailable, "certstore: the control plane is shutting down; the lock is released")
		}
		s.log.Info("certstore: lock released as its stream ended", "lock", name, "principal", p.String(), "err", ctx.Err())
		return status.FromContextError(ctx.Err()).Err()
	}
}

// unlock releases a lock the handler holds. It does not use the stream's
// context, which has usually ended by now.
func (s *Service) unlock(cs *certstorage.Storage, p auth.Principal, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := cs.Unlock(ctx, name); err != nil {
		// The store lock is bound to this replica's session lease, which frees
		// it anyway if the replica dies; a failed unlock is worth a warning only.
		s.log.Warn("certstore: releasing a lock failed", "lock", name, "principal", p.String(), "err", err)
	}
}

// beginLock counts a Lock stream of namespace ns, refusing it over the limit or
// after Close.
func (s *Service) beginLock(ns string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return status.Error(codes.Unavailable, "certstore: the control plane is shutting down")
	}
	if s.locks[ns] >= s.opts.MaxLocksPerNamespace {
		return status.Errorf(codes.ResourceExhausted, "namespace %q already has %d locks held or waiting, the most one namespace may have", ns, s.locks[ns])
	}
	s.locks[ns]++
	s.streams.Add(1)
	return nil
}

func (s *Service) endLock(ns string) {
	s.mu.Lock()
	s.locks[ns]--
	if s.locks[ns] == 0 {
		delete(s.locks, ns)
	}
	s.mu.Unlock()
	s.streams.Done()
}
