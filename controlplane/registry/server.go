package registry

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/store"
)

// storeTimeout bounds one store call of an RPC whose caller set no shorter
// deadline.
const storeTimeout = 5 * time.Second

// RPC names, for metrics and logs.
const (
	rpcRegister   = "register"
	rpcDeregister = "deregister"
	rpcLookup     = "lookup"
)

// Register adds or renews one endpoint. A registration lapses unless renewed
// within its TTL, so calling Register again is the heartbeat. The endpoint's ID
// (which ties health verdicts to it) survives renewals.
func (r *Registry) Register(ctx context.Context, req *cpv1.RegisterRequest) (*cpv1.RegistryEndpoint, error) {
	p, err := r.caller(ctx, rpcRegister)
	if err != nil {
		return nil, err
	}
	svc := serviceKey{req.GetNamespace(), req.GetService()}
	if err := checkNames(svc); err != nil {
		return nil, r.refuse(rpcRegister, p, codes.InvalidArgument, "%s", err)
	}
	addr, err := checkAddress(req.GetAddress(), r.opts.AllowLoopback)
	if err != nil {
		return nil, r.refuse(rpcRegister, p, codes.InvalidArgument, "%s", err)
	}
	weight := int(req.GetWeight())
	if weight == 0 {
		weight = defaultWeight
	}
	if weight < 1 || weight > maxWeight {
		return nil, r.refuse(rpcRegister, p, codes.InvalidArgument, "weight %d is not between 1 and %d", weight, maxWeight)
	}
	ttl := int(req.GetTtlSeconds())
	if ttl == 0 {
		ttl = defaultTTLSeconds
	}
	if ttl < minTTLSeconds || ttl > maxTTLSeconds {
		return nil, r.refuse(rpcRegister, p, codes.InvalidArgument, "ttl_seconds %d is not between %d and %d", ttl, minTTLSeconds, maxTTLSeconds)
	}
	if err := checkHealthPath(req.GetHealthCheckPath()); err != nil {
		return nil, r.refuse(rpcRegister, p, codes.InvalidArgument, "%s", err)
	}
	if err := r.authorize(ctx, rpcRegister, p, VerbWrite, svc); err != nil {
		return nil, err
	}
	if _, n, exists := r.view.current(svc, addr); !exists && n >= r.opts.MaxEndpointsPerService {
		return nil, r.refuse(rpcRegister, p, codes.ResourceExhausted, "service %s already has %d endpoints, the most one service may have", svc, n)
	}

	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	key := Prefix + endpointKey(svc, addr)
	id, err := r.registrationID(ctx, key, req.GetHealthCheckPath())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "registry: reading %s %s: %v", svc, addr, err)
	}
	rec := record{
		ID:              id,
		Namespace:       svc.namespace,
		Service:         svc.name,
		Address:         addr,
		Weight:          weight,
		Healthy:         req.GetHealthy(),
		HealthCheckPath: req.GetHealthCheckPath(),
		RegisteredBy:    p.String(),
		ExpiresUnix:     time.Now().Add(time.Duration(ttl) * time.Second).Unix(),
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "registry: encoding the registration: %v", err)
	}
	if _, err := r.st.PutWithTTL(ctx, key, value, time.Duration(ttl)*time.Second); err != nil {
		return nil, status.Errorf(codes.Unavailable, "registry: storing %s %s: %v", svc, addr, err)
	}
	return toProto(entry{rec, r.view.healthOf(svc, addr, rec)}), nil
}

// registrationID keeps the ID of the registration at key when it is a renewal
// (same health-check path); anything else is a new registration with a new ID.
// It reads the store rather than the view, which may not have seen a write of a
// moment ago.
func (r *Registry) registrationID(ctx context.Context, key, healthPath string) (string, error) {
	kv, err := r.st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return newID(), nil
	}
	if err != nil {
		return "", err
	}
	var old record
	if json.Unmarshal(kv.Value, &old) == nil && old.ID != "" && old.HealthCheckPath == healthPath {
		return old.ID, nil
	}
	return newID(), nil
}

// Deregister removes one endpoint at once (rather than at the end of its TTL),
// with its health verdict.
func (r *Registry) Deregister(ctx context.Context, req *cpv1.DeregisterRequest) (*cpv1.DeregisterResponse, error) {
	p, err := r.caller(ctx, rpcDeregister)
	if err != nil {
		return nil, err
	}
	svc := serviceKey{req.GetNamespace(), req.GetService()}
	if err := checkNames(svc); err != nil {
		return nil, r.refuse(rpcDeregister, p, codes.InvalidArgument, "%s", err)
	}
	// The loopback check is the registration's business; any address that was
	// stored may be removed, in the form Register stored it.
	addr, err := checkAddress(req.GetAddress(), true)
	if err != nil {
		return nil, r.refuse(rpcDeregister, p, codes.InvalidArgument, "%s", err)
	}
	if err := r.authorize(ctx, rpcDeregister, p, VerbWrite, svc); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	rel := endpointKey(svc, addr)
	if err := r.st.Delete(ctx, Prefix+rel, store.Any); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "registry: %s has no endpoint %s", svc, addr)
		}
		return nil, status.Errorf(codes.Unavailable, "registry: removing %s %s: %v", svc, addr, err)
	}
	if err := r.st.Delete(ctx, HealthPrefix+rel, store.Any); err != nil && !errors.Is(err, store.ErrNotFound) {
		// The leader removes verdicts left behind; this is only tidiness.
		r.log.Warn("registry: removing the health verdict of a deregistered endpoint failed", "service", svc.String(), "address", addr, "err", err)
	}
	r.log.Info("registry: endpoint deregistered", "service", svc.String(), "address", addr, "by", p.String())
	return &cpv1.DeregisterResponse{}, nil
}

// Lookup returns a service's endpoints (the healthy ones, or all), from memory.
func (r *Registry) Lookup(ctx context.Context, req *cpv1.LookupRequest) (*cpv1.LookupResponse, error) {
	p, err := r.caller(ctx, rpcLookup)
	if err != nil {
		return nil, err
	}
	svc := serviceKey{req.GetNamespace(), req.GetService()}
	if err := checkNames(svc); err != nil {
		return nil, r.refuse(rpcLookup, p, codes.InvalidArgument, "%s", err)
	}
	if err := r.authorize(ctx, rpcLookup, p, VerbRead, svc); err != nil {
		return nil, err
	}
	entries := r.view.lookup(svc, req.GetIncludeUnhealthy())
	resp := &cpv1.LookupResponse{Endpoints: make([]*cpv1.RegistryEndpoint, 0, len(entries))}
	for _, e := range entries {
		resp.Endpoints = append(resp.Endpoints, toProto(e))
	}
	return resp, nil
}

func checkNames(svc serviceKey) error {
	if err := checkName("namespace", svc.namespace); err != nil {
		return err
	}
	return checkName("service", svc.name)
}

// caller returns the authenticated principal, or Unauthenticated.
func (r *Registry) caller(ctx context.Context, rpc string) (auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return auth.Principal{}, r.refuse(rpc, auth.Principal{}, codes.Unauthenticated, "the call carries no credential")
	}
	return p, nil
}

// authorize applies the third-party rule. A proxy acts for the one service its
// credential is bound to: it may write that service in its own namespace, and
// read any service of its namespace. Anyone else needs Options.Authorize.
func (r *Registry) authorize(ctx context.Context, rpc string, p auth.Principal, verb string, svc serviceKey) error {
	if p.Kind == auth.KindProxy {
		switch {
		case p.ProxyNamespace != svc.namespace:
			return r.refuse(rpc, p, codes.PermissionDenied, "%s is bound to namespace %q and may not %s registry service %s", p, p.ProxyNamespace, verb, svc)
		case verb == VerbRead:
			return nil
		case p.ProxyName == "*":
			// A credential for every name of a namespace does not say which app
			// its proxy fronts, so it cannot vouch for any one service.
			return r.refuse(rpc, p, codes.PermissionDenied, "%s is bound to every name in namespace %q (*) and may not %s registry service %s: bind its credential to the service", p, p.ProxyNamespace, verb, svc)
		case p.ProxyName != svc.name:
			return r.refuse(rpc, p, codes.PermissionDenied, "%s is bound to service %q and may not %s registry service %s", p, p.ProxyName, verb, svc)
		}
		return nil
	}
	if r.opts.Authorize == nil {
		return r.refuse(rpc, p, codes.PermissionDenied, "%s may not %s registry service %s: no authorizer is configured for callers that are not proxies", p, verb, svc)
	}
	if err := r.opts.Authorize(ctx, verb, svc.namespace, svc.name); err != nil {
		if st, ok := status.FromError(err); ok {
			r.metrics.refused.WithLabelValues(rpc, reasonOf(st.Code())).Inc()
			r.log.Info("registry: call refused", "rpc", rpc, "principal", p.String(), "reason", st.Message())
			return err
		}
		return r.refuse(rpc, p, codes.PermissionDenied, "%s may not %s registry service %s: %v", p, verb, svc, err)
	}
	return nil
}

// refuse counts, logs and returns a refusal.
func (r *Registry) refuse(rpc string, p auth.Principal, code codes.Code, format string, args ...any) error {
	st := status.Newf(code, "registry: "+format, args...)
	r.metrics.refused.WithLabelValues(rpc, reasonOf(code)).Inc()
	who := "unauthenticated"
	if p.Kind != "" {
		who = p.String()
	}
	r.log.Info("registry: call refused", "rpc", rpc, "principal", who, "code", code.String(), "reason", st.Message())
	return st.Err()
}

func reasonOf(c codes.Code) string {
	switch c {
	case codes.Unauthenticated:
		return "unauthenticated"
	case codes.PermissionDenied:
		return "permission_denied"
	case codes.InvalidArgument:
		return "invalid"
	case codes.ResourceExhausted:
		return "too_many_endpoints"
	default:
		return "other"
	}
}

func toProto(e entry) *cpv1.RegistryEndpoint {
	return &cpv1.RegistryEndpoint{
		Namespace:       e.Namespace,
		Service:         e.Service,
		Address:         e.Address,
		Weight:          int32(e.Weight),
		Healthy:         e.healthy,
		RegisteredBy:    e.RegisteredBy,
		ExpiresUnix:     e.ExpiresUnix,
		HealthCheckPath: e.HealthCheckPath,
	}
}
