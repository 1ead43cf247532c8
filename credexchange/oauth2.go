package credexchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// OAuth2 is the client side of a token endpoint, shared by both grants.
type OAuth2 struct {
	// TokenURL is the endpoint; see CheckTokenURL. Required.
	TokenURL string
	// ClientID and ClientSecret authenticate the egress to the endpoint, with
	// HTTP Basic (RFC 6749 §2.3.1) unless ClientAuthInBody. Required.
	ClientID, ClientSecret Secret
	// ClientAuthInBody sends client_id and client_secret as form parameters,
	// for endpoints that do not take HTTP Basic.
	ClientAuthInBody bool
	// Scopes are requested with every token; none: the endpoint's default.
	Scopes []string
	// Audience, when set, is sent as the "audience" parameter (RFC 8693 §2.1,
	// and what several providers take with client credentials too).
	Audience string
	// Resource, when set, is sent as the "resource" parameter (RFC 8707).
	Resource string

	// HTTPClient sends token requests. Nil: NewHTTPClient(nil, Timeout).
	HTTPClient *http.Client
	// Timeout bounds one fetch. Zero: DefaultFetchTimeout.
	Timeout time.Duration
	// RefreshBefore: see DefaultRefreshBefore. Zero: that default.
	RefreshBefore time.Duration
	// Logger receives a warning when a background refresh fails (the cached
	// token stays in use). Nil: discard.
	Logger *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

func (o *OAuth2) check() error {
	var errs []string
	if err := CheckTokenURL(o.TokenURL); err != nil {
		errs = append(errs, "token URL: "+err.Error())
	}
	if o.ClientID.IsZero() {
		errs = append(errs, "client ID is required")
	}
	if o.ClientSecret.IsZero() {
		errs = append(errs, "client secret is required")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func (o *OAuth2) newClock() (*clock, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	clk := &clock{now: o.Now, ctx: ctx, timeout: o.Timeout, refreshBefore: o.RefreshBefore}
	if clk.now == nil {
		clk.now, o.Now = time.Now, time.Now
	}
	if clk.timeout <= 0 {
		clk.timeout = DefaultFetchTimeout
	}
	if clk.refreshBefore <= 0 {
		clk.refreshBefore = DefaultRefreshBefore
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tokenURL := o.TokenURL
	clk.onRefreshFail = func(err error) {
		log.Warn("credexchange: refreshing a token failed; the cached token stays in use until it expires",
			"tokenURL", tokenURL, "err", err.Error())
	}
	if o.HTTPClient == nil {
		o.HTTPClient = NewHTTPClient(nil, clk.timeout)
	}
	return clk, cancel
}

// fetch asks the endpoint for a token with the grant and parameters of params
// (grant_type among them), through x/oauth2's token request, which reads
// access_token, token_type and expires_in and reports error responses.
func (o *OAuth2) fetch(ctx context.Context, params url.Values) (Token, error) {
	for k, v := range map[string]string{"audience": o.Audience, "resource": o.Resource} {
		if v != "" {
			params.Set(k, v)
		}
	}
	cfg := clientcredentials.Config{
		ClientID: o.ClientID.Reveal(), ClientSecret: o.ClientSecret.Reveal(),
		TokenURL: o.TokenURL, Scopes: o.Scopes, EndpointParams: params,
		AuthStyle: oauth2.AuthStyleInHeader,
	}
	if o.ClientAuthInBody {
		cfg.AuthStyle = oauth2.AuthStyleInParams
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, o.HTTPClient)
	t, err := cfg.Token(ctx)
	if err != nil {
		return Token{}, o.describe(err)
	}
	typ := t.Type() // "Bearer" for an empty or any-case "bearer"
	if typ != "Bearer" {
		// DPoP or MAC tokens need proof the egress cannot give; sending one as
		// a bearer token would fail at the API anyway.
		return Token{}, &FetchError{TokenURL: o.TokenURL, Reason: "unsupported token_type " + quoteShort(typ)}
	}
	if t.AccessToken == "" {
		return Token{}, &FetchError{TokenURL: o.TokenURL, Reason: "response without access_token"}
	}
	tok := Token{Type: typ, Value: NewSecret(t.AccessToken)}
	if !t.Expiry.IsZero() {
		// x/oauth2 dates expires_in by the wall clock; re-date it by ours, so
		// that the cache's timing and the expiry agree.
		tok.Expiry = o.Now().Add(time.Until(t.Expiry).Round(time.Second))
	}
	return tok, nil
}

// FetchError is a failed token request, described without secrets: the
// endpoint, the HTTP status and the OAuth error code it answered, or the
// transport failure. It never carries the response body, which an endpoint may
// fill with anything, the request's credentials included.
type FetchError struct {
	TokenURL string
	Status   int    // the endpoint's HTTP status; 0: no response
	Code     string // the OAuth "error" (RFC 6749 §5.2), if any
	Reason   string
}

func (e *FetchError) Error() string {
	var b strings.Builder
	b.WriteString("token request to ")
	b.WriteString(e.TokenURL)
	b.WriteString(" failed: ")
	if e.Status != 0 {
		fmt.Fprintf(&b, "HTTP %d", e.Status)
		if e.Code != "" {
			b.WriteString(" " + e.Code)
		}
		if e.Reason != "" {
			b.WriteString(": ")
		}
	}
	b.WriteString(e.Reason)
	return b.String()
}

func (o *OAuth2) describe(err error) error {
	fe := &FetchError{TokenURL: o.TokenURL}
	var re *oauth2.RetrieveError
	var ue *url.Error
	switch {
	case errors.As(err, &re):
		if re.Response != nil {
			fe.Status = re.Response.StatusCode
		}
		fe.Code = quoteShort(re.ErrorCode)
		if fe.Code == "" {
			fe.Reason = "the endpoint refused the request"
		}
	case errors.Is(err, context.DeadlineExceeded):
		fe.Reason = "no answer in time"
	case errors.Is(err, errResponseTooLarge):
		fe.Reason = errResponseTooLarge.Error()
	case errors.As(err, &ue):
		// The URL is ours and carries no secret; the cause is a dial, TLS or
		// protocol failure.
		fe.Reason = ue.Err.Error()
	case strings.Contains(err.Error(), errResponseTooLarge.Error()):
		// x/oauth2 formats the read error with %v: no chain to follow.
		fe.Reason = errResponseTooLarge.Error()
	case strings.Contains(err.Error(), "missing access_token"):
		fe.Reason = "response without access_token"
	default:
		// x/oauth2's parse errors may quote parts of the body: keep none of it.
		fe.Reason = "unreadable token response"
	}
	return fe
}

// quoteShort keeps an endpoint-supplied word printable and short for a log line.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}

// ClientCredentials is a token source with the client-credentials grant
// (RFC 6749 §4.4): one token for the egress's client, cached and refreshed.
type ClientCredentials struct {
	c      *cell
	cancel context.CancelFunc
}

// NewClientCredentials checks o and returns its source. Nothing is fetched
// until the first Token.
func NewClientCredentials(o OAuth2) (*ClientCredentials, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	clk, cancel := o.newClock()
	return &ClientCredentials{
		c: &cell{clk: clk, fetch: func(ctx context.Context) (Token, error) {
			return o.fetch(ctx, url.Values{})
		}},
		cancel: cancel,
	}, nil
}

// Token returns a usable token: the cached one (refreshing it in the background
// once due), or a new one fetched once for every concurrent caller. An error is
// a *FetchError (or ctx's error).
func (s *ClientCredentials) Token(ctx context.Context) (Token, error) { return s.c.get(ctx) }

// Close stops a fetch in flight; Token must not be called after.
func (s *ClientCredentials) Close() error { s.cancel(); return nil }
