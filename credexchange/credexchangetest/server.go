// Package credexchangetest is a minimal OAuth 2.0 token endpoint for tests of
// credential exchange: the client-credentials grant (RFC 6749 §4.4) and the
// token-exchange grant (RFC 8693), with client authentication by HTTP Basic or
// form parameters. It is not for production code.
package credexchangetest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
)

// TokenServer is a running token endpoint on 127.0.0.1.
type TokenServer struct {
	*httptest.Server
	ClientID, ClientSecret string

	// Hits counts token requests, good or bad.
	Hits atomic.Int64

	mu        sync.Mutex
	expiresIn int
	down      bool
	gate      chan struct{}
	issued    map[string]Grant
}

// Grant is what a token was issued for.
type Grant struct {
	Type         string // grant_type
	Scope        string
	Audience     string
	SubjectToken string
}

// NewTokenServer starts an endpoint that accepts one client; it is closed when
// the test ends.
func NewTokenServer(t interface{ Cleanup(func()) }, clientID, clientSecret string) *TokenServer {
	s := &TokenServer{ClientID: clientID, ClientSecret: clientSecret, expiresIn: 3600, issued: map[string]Grant{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// URL of the token endpoint.
func (s *TokenServer) TokenURL() string { return s.URL + "/token" }

// SetExpiresIn sets the expires_in of the tokens issued from now on.
func (s *TokenServer) SetExpiresIn(sec int) { s.mu.Lock(); s.expiresIn = sec; s.mu.Unlock() }

// SetDown makes the endpoint answer 503 (true) or serve again (false).
func (s *TokenServer) SetDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

// Hold makes requests wait until the returned function is called.
func (s *TokenServer) Hold() (release func()) {
	g := make(chan struct{})
	s.mu.Lock()
	s.gate = g
	s.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(g) }) }
}

// Issued returns what token tok was issued for, if this server issued it.
func (s *TokenServer) Issued(tok string) (Grant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.issued[tok]
	return g, ok
}

func (s *TokenServer) serve(w http.ResponseWriter, r *http.Request) {
	s.Hits.Add(1)
	s.mu.Lock()
	gate, down, exp := s.gate, s.down, s.expiresIn
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/token" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != s.ClientID || secret != s.ClientSecret {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	g := Grant{Type: r.PostForm.Get("grant_type"), Scope: r.PostForm.Get("scope"), Audience: r.PostForm.Get("audience")}
	switch g.Type {
	case "client_credentials":
	case "urn:ietf:params:oauth:grant-type:token-exchange":
		g.SubjectToken = r.PostForm.Get("subject_token")
		if g.SubjectToken == "" || r.PostForm.Get("subject_token_type") == "" {
			oauthError(w, http.StatusBadRequest, "invalid_request")
			return
		}
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := "at-" + hex.EncodeToString(b[:])
	s.mu.Lock()
	s.issued[tok] = g
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": exp})
}

func oauthError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
}
