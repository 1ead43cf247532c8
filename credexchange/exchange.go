package credexchange

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/url"
	"sync"
	"time"
)

// Token types of RFC 8693 §3.
const (
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	grantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// DefaultExchangeCacheSize bounds the tokens a TokenExchange keeps, one per
// distinct subject token.
const DefaultExchangeCacheSize = 10_000

// TokenExchange is a token source with the token-exchange grant (RFC 8693): the
// caller's own token (the subject token) is traded at the endpoint for a token
// the external API accepts. Exchanged tokens are cached per subject token, and
// never used past the subject token's own expiry.
type TokenExchange struct {
	o                OAuth2
	clk              *clock
	cancel           context.CancelFunc
	subjectTokenType string
	requestedType    string
	max              int
	mu               sync.Mutex
	cells            map[[sha256.Size]byte]*cell
}

// ExchangeOptions are the grant's own parameters.
type ExchangeOptions struct {
	// SubjectTokenType describes the caller's token. Default TokenTypeAccessToken.
	SubjectTokenType string
	// RequestedTokenType, when set, is sent as requested_token_type.
	RequestedTokenType string
	// CacheSize bounds the cache. Zero: DefaultExchangeCacheSize.
	CacheSize int
}

// NewTokenExchange checks o and returns its source.
func NewTokenExchange(o OAuth2, x ExchangeOptions) (*TokenExchange, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if x.SubjectTokenType == "" {
		x.SubjectTokenType = TokenTypeAccessToken
	}
	if x.CacheSize <= 0 {
		x.CacheSize = DefaultExchangeCacheSize
	}
	s := &TokenExchange{subjectTokenType: x.SubjectTokenType, requestedType: x.RequestedTokenType,
		max: x.CacheSize, cells: map[[sha256.Size]byte]*cell{}}
	s.clk, s.cancel = o.newClock()
	s.o = o
	return s, nil
}

var errNoSubjectToken = errors.New("no subject token to exchange")

// Token returns a token exchanged for subjectToken, which expires at notAfter
// (zero: unknown). Concurrent requests with the same subject token share one
// exchange. An error is a *FetchError (or ctx's error).
func (s *TokenExchange) Token(ctx context.Context, subjectToken string, notAfter time.Time) (Token, error) {
	if subjectToken == "" {
		return Token{}, errNoSubjectToken
	}
	// Keyed by a digest, so that the map's keys are no tokens; the cell keeps
	// the subject token only to refresh the exchanged one.
	key := sha256.Sum256([]byte(subjectToken))
	s.mu.Lock()
	c, ok := s.cells[key]
	if !ok {
		if len(s.cells) >= s.max {
			s.evict()
		}
		c = &cell{clk: s.clk, notAfter: notAfter, fetch: func(ctx context.Context) (Token, error) {
			params := url.Values{
				"grant_type":         {grantTokenExchange},
				"subject_token":      {subjectToken},
				"subject_token_type": {s.subjectTokenType},
			}
			if s.requestedType != "" {
				params.Set("requested_token_type", s.requestedType)
			}
			return s.o.fetch(ctx, params)
		}}
		s.cells[key] = c
	}
	s.mu.Unlock()
	return c.get(ctx)
}

// evict drops the cells that hold nothing usable, and, if that frees nothing,
// an eighth of the others. s.mu is held.
func (s *TokenExchange) evict() {
	now := s.clk.now()
	for k, c := range s.cells {
		if c.expired(now) {
			delete(s.cells, k)
		}
	}
	n := max(s.max/8, 1)
	for k := range s.cells {
		if len(s.cells) < s.max || n == 0 {
			return
		}
		delete(s.cells, k)
		n--
	}
}

// Close stops the exchanges in flight; Token must not be called after.
func (s *TokenExchange) Close() error { s.cancel(); return nil }
