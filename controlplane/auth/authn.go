package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
)

// Options configures an Authenticator. Client certificates need no option here:
// the TLS server verifies them against the configured CA before a call arrives.
type Options struct {
	ProxyTokens []ProxyToken
	APITokens   []APIToken
	// OIDC verifies people's bearer tokens; nil refuses every token that is not a
	// proxy or API token.
	OIDC *OIDCVerifier
	// OnRefused is told of every call refused for want of valid credentials (the
	// audit log records it). It must not block for long.
	OnRefused func(ctx context.Context, r Refusal)
}

// Refusal describes a call refused before its caller was known.
type Refusal struct {
	// Method is the gRPC full method or "HTTP <method> <path>".
	Method string
	Peer   string
	Reason string
	// Request is the gRPC request message (nil for streams and HTTP), from which
	// the audit record takes kind, namespace and name.
	Request any
}

// Authenticator turns a call's credentials into a Principal: a bearer token
// (proxy bootstrap token, API token or OIDC ID token) when one is sent, else a
// verified client certificate. A call with an invalid token is refused even if
// it also has a certificate: the caller asked to be someone, and is not.
type Authenticator struct {
	tokens    *tokenTable
	oidc      *OIDCVerifier
	onRefused func(context.Context, Refusal)
}

// NewAuthenticator checks the token configuration (digests well-formed, names
// unique, proxy identities complete).
func NewAuthenticator(opts Options) (*Authenticator, error) {
	t, err := newTokenTable(opts.ProxyTokens, opts.APITokens)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{tokens: t, oidc: opts.OIDC, onRefused: opts.OnRefused}
	if a.onRefused == nil {
		a.onRefused = func(context.Context, Refusal) {}
	}
	return a, nil
}

// Credentials are what a call presented.
type Credentials struct {
	// Authorization is the Authorization header (or gRPC metadata) value, "" if
	// none was sent.
	Authorization string
	// VerifiedChains are the client certificate chains the TLS handshake
	// verified against the client CA (empty: no certificate, or none configured).
	VerifiedChains [][]*x509.Certificate
}

// authError is an authentication failure; unavailable marks an identity-provider
// outage rather than bad credentials.
type authError struct {
	msg         string
	unavailable bool
}

func (e *authError) Error() string { return e.msg }

// IsUnavailable reports whether err says the credentials could not be checked
// (the identity provider is down) rather than that they are wrong.
func IsUnavailable(err error) bool {
	var ae *authError
	return errors.As(err, &ae) && ae.unavailable
}

// Authenticate returns who presented creds. Its errors never contain the token.
func (a *Authenticator) Authenticate(ctx context.Context, creds Credentials) (Principal, error) {
	if creds.Authorization != "" {
		scheme, token, ok := strings.Cut(creds.Authorization, " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return Principal{}, &authError{msg: "the Authorization header is not \"Bearer <token>\""}
		}
		return a.bearer(ctx, token)
	}
	if len(creds.VerifiedChains) > 0 && len(creds.VerifiedChains[0]) > 0 {
		return certPrincipal(creds.VerifiedChains[0][0])
	}
	return Principal{}, &authError{msg: "no credentials: send a client certificate or a bearer token"}
}

func (a *Authenticator) bearer(ctx context.Context, token string) (Principal, error) {
	if p, ok := a.tokens.lookup(token); ok {
		return p, nil
	}
	if a.oidc != nil && strings.Count(token, ".") == 2 {
		name, err := a.oidc.Verify(ctx, token)
		if errors.Is(err, errIdPUnavailable) {
			return Principal{}, &authError{msg: err.Error(), unavailable: true}
		}
		if err != nil {
			return Principal{}, &authError{msg: err.Error()}
		}
		return Principal{Kind: KindUser, Name: name}, nil
	}
	return Principal{}, &authError{msg: "the bearer token is not one this control plane knows"}
}

// certPrincipal names a verified client certificate by its first URI SAN (a SPIFFE
// ID, say) or else its subject common name.
func certPrincipal(leaf *x509.Certificate) (Principal, error) {
	if len(leaf.URIs) > 0 {
		return Principal{Kind: KindCert, Name: leaf.URIs[0].String()}, nil
	}
	if leaf.Subject.CommonName != "" {
		return Principal{Kind: KindCert, Name: leaf.Subject.CommonName}, nil
	}
	return Principal{}, &authError{msg: "the client certificate has neither a URI SAN nor a subject common name to name it by"}
}

// grpcCredentials reads a call's credentials from its metadata and TLS state.
func grpcCredentials(ctx context.Context) (Credentials, string) {
	var c Credentials
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			c.Authorization = v[0]
		}
	}
	addr := ""
	if p, ok := peer.FromContext(ctx); ok {
		addr = p.Addr.String()
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			c.VerifiedChains = info.State.VerifiedChains
		}
	}
	return c, addr
}

func grpcError(err error) error {
	if IsUnavailable(err) {
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Unauthenticated, err.Error())
}

// UnaryInterceptor authenticates every unary call and puts the Principal in its
// context; unauthenticated calls get Unauthenticated (Unavailable while the
// identity provider cannot be reached).
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		creds, addr := grpcCredentials(ctx)
		p, err := a.Authenticate(ctx, creds)
		if err != nil {
			a.onRefused(ctx, Refusal{Method: info.FullMethod, Peer: addr, Reason: err.Error(), Request: req})
			return nil, grpcError(err)
		}
		return handler(WithPrincipal(ctx, p), req)
	}
}

// StreamInterceptor is UnaryInterceptor for streams.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := ss.Context()
		creds, addr := grpcCredentials(ctx)
		p, err := a.Authenticate(ctx, creds)
		if err != nil {
			a.onRefused(ctx, Refusal{Method: info.FullMethod, Peer: addr, Reason: err.Error()})
			return grpcError(err)
		}
		return handler(srv, &principalStream{ServerStream: ss, ctx: WithPrincipal(ctx, p)})
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// Middleware authenticates every HTTP request and puts the Principal in its
// context. A refused request is answered by deny with the error (401, or 503 when
// IsUnavailable), so that the API keeps one error format.
func (a *Authenticator) Middleware(next http.Handler, deny func(w http.ResponseWriter, r *http.Request, err error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		creds := Credentials{Authorization: r.Header.Get("Authorization")}
		if r.TLS != nil {
			creds.VerifiedChains = r.TLS.VerifiedChains
		}
		p, err := a.Authenticate(r.Context(), creds)
		if err != nil {
			a.onRefused(r.Context(), Refusal{Method: fmt.Sprintf("HTTP %s %s", r.Method, r.URL.Path), Peer: r.RemoteAddr, Reason: err.Error()})
			deny(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// Entry is the audit record of a refusal: no principal, allowed false, and
// kind, namespace and name when the request message carries them. Its action is
// the gRPC method's name in lower case ("apply"), or "http" for the HTTP API; the
// reason names the full method or HTTP request.
func (r Refusal) Entry() *cpv1.AuditEntry {
	e := &cpv1.AuditEntry{
		Action: "http",
		Reason: fmt.Sprintf("%s unauthenticated (peer %s): %s", r.Method, r.Peer, r.Reason),
	}
	if i := strings.LastIndexByte(r.Method, '/'); i >= 0 && strings.HasPrefix(r.Method, "/") {
		e.Action = strings.ToLower(r.Method[i+1:])
	}
	if m, ok := r.Request.(interface{ GetKind() string }); ok {
		e.Kind = m.GetKind()
	}
	if m, ok := r.Request.(interface{ GetNamespace() string }); ok {
		e.Namespace = m.GetNamespace()
	}
	if m, ok := r.Request.(interface{ GetName() string }); ok {
		e.Name = m.GetName()
	}
	return e
}
