package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
)

// OIDCConfig says which identity provider's tokens identify people.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL; its discovery document and key set are
	// fetched from it. Tokens must carry exactly this iss.
	Issuer string
	// Audience is the client ID tokens must be issued to (aud).
	Audience string
	// Claim names the person in audit records and bindings ("user:<value>").
	// Default: "email" (when present and not marked unverified), else "sub".
	Claim string
	// HTTPClient fetches discovery and keys (a custom CA bundle, a proxy). Nil:
	// a client with a 10 s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Now is the clock expiry is checked against; nil means time.Now.
	Now func() time.Time
}

// errIdPUnavailable is returned while the provider's discovery document cannot be
// fetched: the caller's token may be fine, so this is not an authentication
// failure but an outage (gRPC Unavailable, HTTP 503).
var errIdPUnavailable = errors.New("the identity provider is unreachable; try again")

// discoveryRetry is the least time between two discovery attempts, so that a
// provider outage does not turn every API call into an outbound request.
const discoveryRetry = 5 * time.Second

// OIDCVerifier verifies ID tokens of people against the provider's key set. It
// discovers the provider on first use (and retries after a failure), so a
// control plane starts even while the provider is down.
type OIDCVerifier struct {
	cfg    OIDCConfig
	client *http.Client
	log    *slog.Logger

	mu         sync.Mutex
	verifier   *gooidc.IDTokenVerifier
	lastFailed time.Time
	lastErr    error
}

// NewOIDCVerifier checks cfg. It does not touch the network.
func NewOIDCVerifier(cfg OIDCConfig) (*OIDCVerifier, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("oidc.issuer: %q is not an http(s) URL", cfg.Issuer)
	}
	if cfg.Audience == "" {
		return nil, errors.New("oidc.audience: required (the client ID tokens are issued to)")
	}
	v := &OIDCVerifier{cfg: cfg, client: cfg.HTTPClient, log: cfg.Logger}
	if v.client == nil {
		v.client = &http.Client{Timeout: 10 * time.Second}
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	return v, nil
}

// Discover fetches the provider's metadata now (the daemon calls it at start so
// that the first person to call does not wait for it). A failure is logged and
// retried on the next token.
func (v *OIDCVerifier) Discover(ctx context.Context) error {
	_, err := v.current(ctx)
	return err
}

func (v *OIDCVerifier) current(ctx context.Context) (*gooidc.IDTokenVerifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.verifier != nil {
		return v.verifier, nil
	}
	if !v.lastFailed.IsZero() && time.Since(v.lastFailed) < discoveryRetry {
		return nil, errIdPUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// The provider keeps the client from this context for its key-set fetches.
	p, err := gooidc.NewProvider(gooidc.ClientContext(ctx, v.client), v.cfg.Issuer)
	if err != nil {
		v.lastFailed, v.lastErr = time.Now(), err
		v.log.Warn("oidc: provider discovery failed; bearer tokens of people are refused until it succeeds",
			"issuer", v.cfg.Issuer, "err", err, "retry_after", discoveryRetry)
		return nil, errIdPUnavailable
	}
	v.verifier = p.Verifier(&gooidc.Config{ClientID: v.cfg.Audience, Now: v.cfg.Now})
	v.log.Info("oidc: provider discovered", "issuer", v.cfg.Issuer)
	return v.verifier, nil
}

// Verify checks an ID token's signature (the provider's keys), issuer, audience
// and expiry, and returns the person's name from the configured claim.
func (v *OIDCVerifier) Verify(ctx context.Context, raw string) (string, error) {
	verifier, err := v.current(ctx)
	if err != nil {
		return "", err
	}
	tok, err := verifier.Verify(gooidc.ClientContext(ctx, v.client), raw)
	if err != nil {
		var expired *gooidc.TokenExpiredError
		if errors.As(err, &expired) {
			return "", fmt.Errorf("the bearer token expired at %s", expired.Expiry.UTC().Format(time.RFC3339))
		}
		// go-oidc's messages name the failed check (issuer, audience, signature)
		// and never echo the token.
		return "", fmt.Errorf("the bearer token is not valid: %v", err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return "", fmt.Errorf("the bearer token's claims: %v", err)
	}
	return nameFromClaims(claims, v.cfg.Claim, tok.Subject)
}

// nameFromClaims picks the person's name: the configured claim, or by default the
// email (unless the provider says it is unverified: anyone can type an address)
// and else the subject.
func nameFromClaims(claims map[string]any, claim, subject string) (string, error) {
	if claim != "" {
		s, _ := claims[claim].(string)
		if s == "" {
			return "", fmt.Errorf("the bearer token has no string claim %q (oidc.claim)", claim)
		}
		return s, nil
	}
	if email, _ := claims["email"].(string); email != "" {
		if verified, present := claims["email_verified"].(bool); !present || verified {
			return email, nil
		}
	}
	if subject == "" {
		return "", errors.New("the bearer token has neither email nor sub")
	}
	return subject, nil
}
