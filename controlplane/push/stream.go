package push

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
)

// Stream serves one proxy: Hello, then its scoped config and every change of it,
// and its ACKs and NACKs.
func (s *Server) Stream(stream cpv1.ConfigPush_StreamServer) error {
	ctx := stream.Context()
	principal, err := s.principal(ctx)
	if err != nil {
		return err
	}
	hello, err := s.awaitHello(stream)
	if err != nil {
		return err
	}
	id, node, err := checkHello(hello)
	if err != nil {
		return err
	}
	from := ""
	if p, ok := peer.FromContext(ctx); ok {
		from = p.Addr.String()
	}
	if !principal.MayActAsProxy(id.role, id.namespace, id.name) {
		s.log.Warn("proxy stream refused: the credential is not bound to the identity claimed",
			"principal", principal.String(), "claimed", id.String(), "node", node, "peer", from)
		return status.Errorf(codes.PermissionDenied, "%s may not act as proxy %s", principal.String(), id)
	}
	if !s.beginStream() {
		return status.Error(codes.Unavailable, "control plane shutting down")
	}
	defer s.streams.Done()
	conn, kicked, err := s.register(id, node, hello)
	if err != nil {
		return err
	}
	defer s.unregister(conn)
	s.log.Info("proxy connected", "proxy", id.String(), "node", node, "peer", from, "principal", principal.String(),
		"running_version", hello.GetRunningVersion(), "build", clip(hello.GetBuild(), 200))

	acks := make(chan error, 1)
	go func() { acks <- s.receiveAcks(stream, conn) }()

	// The first offer is made from a catalog at least as new as the index is now,
	// so a proxy never starts from a state older than its connection.
	view, _ := s.opts.Index.View()
	c, err := s.catalogAtLeast(ctx, view.Revision)
	if err != nil {
		return err
	}
	s.offer(conn, s.scopeFor(c, id))
	for {
		select {
		case <-conn.notify:
			u := conn.take(time.Now())
			if u == nil {
				continue
			}
			if err := stream.Send(&cpv1.ConfigUpdate{Version: u.version, Documents: u.docs}); err != nil {
				s.log.Info("proxy stream ended while sending", "proxy", id.String(), "node", node, "err", err)
				return err
			}
			s.m.pushes.WithLabelValues(id.role).Inc()
			s.records.mark(node)
			s.log.Debug("config pushed", "proxy", id.String(), "node", node, "version", u.version, "resources", u.count)
		case err := <-acks:
			s.log.Info("proxy disconnected", "proxy", id.String(), "node", node, "err", err)
			return err
		case <-kicked:
			return status.Errorf(codes.Aborted, "node %q opened a newer stream", node)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.ctx.Done():
			return status.Error(codes.Unavailable, "control plane shutting down")
		}
	}
}

// catalogAtLeast waits for a catalog of store revision rev or later.
func (s *Server) catalogAtLeast(ctx context.Context, rev int64) (*catalog, error) {
	for {
		s.mu.Lock()
		c, changed := s.cat, s.catChanged
		s.mu.Unlock()
		if c != nil && c.revision >= rev {
			return c, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-s.ctx.Done():
			return nil, status.Error(codes.Unavailable, "control plane shutting down")
		}
	}
}

func (s *Server) principal(ctx context.Context) (auth.Principal, error) {
	if s.opts.Authorize != nil {
		p, err := s.opts.Authorize(ctx)
		if err != nil {
			if _, ok := status.FromError(err); ok {
				return auth.Principal{}, err
			}
			return auth.Principal{}, status.Error(codes.Unauthenticated, err.Error())
		}
		return p, nil
	}
	p, ok := auth.FromContext(ctx)
	if !ok {
		return auth.Principal{}, status.Error(codes.Unauthenticated, "the stream carries no authenticated caller")
	}
	return p, nil
}

// awaitHello reads the first message, which must be a Hello, within HelloTimeout.
func (s *Server) awaitHello(stream cpv1.ConfigPush_StreamServer) (*cpv1.Hello, error) {
	type result struct {
		req *cpv1.StreamRequest
		err error
	}
	ch := make(chan result, 1)
	// When the wait times out, returning from the handler ends the stream, which
	// ends this Recv.
	go func() {
		req, err := stream.Recv()
		ch <- result{req, err}
	}()
	t := time.NewTimer(s.opts.HelloTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		h := r.req.GetHello()
		if h == nil {
			return nil, status.Error(codes.InvalidArgument, "the first message of a stream must be a Hello")
		}
		return h, nil
	case <-t.C:
		return nil, status.Errorf(codes.DeadlineExceeded, "no Hello within %v", s.opts.HelloTimeout)
	}
}

// checkHello checks the names a Hello gives; they become log fields and store keys.
func checkHello(h *cpv1.Hello) (identity, string, error) {
	id := identity{role: h.GetRole(), namespace: h.GetNamespace(), name: h.GetName()}
	switch id.role {
	case RoleIngress, RoleEgress, RoleSidecar:
	default:
		return identity{}, "", status.Errorf(codes.InvalidArgument, "hello.role: %q is not ingress, egress or sidecar", clip(id.role, 64))
	}
	for field, v := range map[string]string{"hello.namespace": id.namespace, "hello.name": id.name, "hello.node": h.GetNode()} {
		if !validName(v) {
			return identity{}, "", status.Errorf(codes.InvalidArgument, "%s: %q is not 1 to 253 letters, digits, '.', '_', ':' or '-'", field, clip(v, 64))
		}
	}
	return id, h.GetNode(), nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

func (s *Server) beginStream() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.streams.Add(1)
	return true
}

// register makes conn the stream of its node. A newer stream from the same node
// (a proxy that reconnected before this replica noticed its old stream die) takes
// over; the older one is ended.
func (s *Server) register(id identity, node string, hello *cpv1.Hello) (*proxyConn, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.conns[node]; old != nil {
		if old.id != id {
			return nil, nil, status.Errorf(codes.AlreadyExists, "node %q is connected as proxy %s", node, old.id)
		}
		close(old.kicked)
	}
	s.connSeq++
	conn := newProxyConn(id, node, s.replica+"-"+strconv.FormatUint(s.connSeq, 10), hello, time.Now())
	conn.kicked = make(chan struct{})
	s.conns[node] = conn
	s.m.connected.WithLabelValues(id.role).Inc()
	s.records.mark(node)
	return conn, conn.kicked, nil
}

func (s *Server) unregister(conn *proxyConn) {
	s.m.connected.WithLabelValues(conn.id.role).Dec()
	s.mu.Lock()
	current := s.conns[conn.node] == conn
	if current {
		delete(s.conns, conn.node)
	}
	s.mu.Unlock()
	if current {
		r := conn.record(time.Now())
		r.Connected = false
		s.records.final(r)
	}
}

// receiveAcks records the proxy's answers until the stream ends.
func (s *Server) receiveAcks(stream cpv1.ConfigPush_StreamServer, conn *proxyConn) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		a := req.GetAck()
		if a == nil {
			return status.Error(codes.InvalidArgument, "after the Hello, a stream carries only Acks")
		}
		if latency, timed := conn.ack(a, time.Now()); timed {
			s.m.ackLatency.Observe(latency.Seconds())
		}
		if a.GetAccepted() {
			s.log.Debug("config accepted", "proxy", conn.id.String(), "node", conn.node, "version", a.GetVersion())
		} else {
			s.m.nacks.WithLabelValues(conn.id.role).Inc()
			s.log.Warn("config refused by proxy (NACK); it keeps serving its previous config",
				"proxy", conn.id.String(), "node", conn.node, "version", a.GetVersion(), "err", clip(a.GetError(), maxErrorBytes))
		}
		s.records.mark(conn.node)
	}
}
