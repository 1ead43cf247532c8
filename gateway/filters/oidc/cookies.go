package oidc

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Cookie layout. A browser keeps at least 4096 bytes of name and value per cookie
// (RFC 6265 §6.1); chunkBytes leaves room under that for the attributes some
// browsers count too. maxChunks bounds the request header a session costs.
const (
	chunkBytes   = 3800
	maxChunks    = 8
	flowLifetime = 10 * time.Minute
	// maxFlows is how many logins may be in progress in one browser (tabs opened
	// while logged out); past it, the older ones are dropped.
	maxFlows = 4
)

var b64 = base64.RawURLEncoding

// sealer encrypts and authenticates cookie values with AES-256-GCM. GCM is an
// AEAD: its tag authenticates the ciphertext and the binding (additional data), so
// a separate HMAC would add a second key and nothing else. Nonces are random (96
// bits, from cipher.NewGCMWithRandomNonce): the key is not at risk of a nonce
// repeat until about 2^32 cookies have been sealed with it, which is why each
// purpose gets its own key.
type sealer struct {
	aead    cipher.AEAD
	binding []byte
}

// newSealer derives a purpose's key from the secret with HKDF-SHA256 (RFC 5869),
// so that the session and the flow cookie never share a key and one cannot be
// passed off as the other.
func newSealer(secret []byte, purpose, binding string) (*sealer, error) {
	key, err := hkdf.Key(sha256.New, secret, nil, "portcullis oidc "+purpose+" cookie v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, binding: []byte(binding)}, nil
}

func (s *sealer) seal(v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(s.aead.Seal(nil, nil, plain, s.binding)), nil
}

var errBadCookie = errors.New("the cookie does not decrypt")

func (s *sealer) open(value string, v any) error {
	raw, err := b64.DecodeString(value)
	if err != nil {
		return errBadCookie
	}
	plain, err := s.aead.Open(nil, nil, raw, s.binding)
	if err != nil {
		return errBadCookie
	}
	if json.Unmarshal(plain, v) != nil {
		return errBadCookie // authentic but not ours: a format from another version
	}
	return nil
}

// session is what the session cookie holds. The claims are read from the ID
// token's payload: the cookie is authenticated, so its contents are as trusted as
// when the ID token was verified, and keeping the token (needed for the logout's
// id_token_hint) and a copy of its claims would double the size.
type session struct {
	Subject      string `json:"sub"`
	IDToken      string `json:"idt"`
	AccessToken  string `json:"at,omitempty"`
	RefreshToken string `json:"rt,omitempty"`
	// Expiry (Unix seconds) is when the tokens run out: refresh before it, or the
	// session ends with it.
	Expiry int64 `json:"exp"`
	// AuthTime (Unix seconds) is the login; the session ends maxAge after it
	// whatever the refreshes.
	AuthTime int64 `json:"auth"`

	claims map[string]any
}

// flow is what the flow cookie holds between the redirect to the provider and
// the callback.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Created  int64  `json:"t"`
}

// idTokenClaims decodes the payload of an ID token the filter verified earlier.
func idTokenClaims(raw string) (map[string]any, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errBadCookie
	}
	b, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, errBadCookie
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil || m == nil {
		return nil, errBadCookie
	}
	return m, nil
}

// chunkName is the name of chunk i of a session too large for one cookie.
func (f *oidcFilter) chunkName(i int) string { return f.cookieName + "-" + strconv.Itoa(i) }

// flowName is the flow cookie of one login. Each login in progress has its own,
// named by a hash of its state, so that two tabs logging in at once do not
// overwrite each other's.
func (f *oidcFilter) flowName(state string) string {
	h := sha256.Sum256([]byte(state))
	return f.cookieName + "-flow-" + b64.EncodeToString(h[:6])
}

// ownCookie reports whether a cookie name is one of the filter's: the session,
// its chunks, or a flow cookie. These never reach the upstream.
func (f *oidcFilter) ownCookie(name string) bool {
	rest, ok := strings.CutPrefix(name, f.cookieName)
	switch {
	case !ok:
		return false
	case rest == "" || strings.HasPrefix(rest, "-flow-"):
		return true
	case len(rest) < 2 || rest[0] != '-':
		return false
	}
	for i := 1; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return false
		}
	}
	return true
}

// readSession finds and opens the session cookie, one piece or in chunks. A
// browser may hold two cookies of one name (set for different paths or, without
// the __Host- prefix, by a sibling domain); each is tried.
func (f *oidcFilter) readSession(r *http.Request) (*session, reason) {
	var whole []string
	var chunks [maxChunks]string
	for _, c := range r.Cookies() {
		if c.Name == f.cookieName {
			whole = append(whole, c.Value)
			continue
		}
		// A chunk: the name, "-" and one digit (maxChunks is at most 10).
		n := len(f.cookieName)
		if len(c.Name) == n+2 && c.Name[n] == '-' && strings.HasPrefix(c.Name, f.cookieName) {
			if i := int(c.Name[n+1]) - '0'; i >= 0 && i < maxChunks && chunks[i] == "" {
				chunks[i] = c.Value
			}
		}
	}
	if chunks[0] != "" {
		var b strings.Builder
		for _, c := range chunks {
			if c == "" {
				break
			}
			b.WriteString(c)
		}
		whole = append(whole, b.String())
	}
	if len(whole) == 0 {
		return nil, reasonNoSession
	}
	for _, v := range whole {
		var s session
		if f.sessions.open(v, &s) != nil || s.Subject == "" || s.IDToken == "" {
			continue
		}
		claims, err := idTokenClaims(s.IDToken)
		if err != nil {
			continue
		}
		s.claims = claims
		return &s, reasonNone
	}
	return nil, reasonBadSession
}

// sessionCookies returns the Set-Cookie lines that store s, replacing whatever
// session cookies r carried: one cookie when it fits, else numbered chunks, and
// the pieces of the other form expired.
func (f *oidcFilter) sessionCookies(r *http.Request, s *session) ([]string, error) {
	value, err := f.sessions.seal(s)
	if err != nil {
		return nil, err
	}
	// Whole seconds, rounded up: AuthTime was truncated to the second.
	maxAge := int((time.Unix(s.AuthTime, 0).Add(f.maxAge).Sub(f.now()) + time.Second - 1) / time.Second)
	if maxAge <= 0 {
		return nil, errors.New("the session has ended")
	}
	var lines, keep []string
	if len(f.cookieName)+1+len(value) <= chunkBytes {
		lines = append(lines, f.cookie(f.cookieName, value, maxAge, f.sameSite))
		keep = []string{f.cookieName}
	} else {
		size := chunkBytes - len(f.chunkName(maxChunks)) - 1
		n := (len(value) + size - 1) / size
		if n > maxChunks {
			return nil, errSessionTooLarge
		}
		for i := range n {
			part := value[i*size : min(len(value), (i+1)*size)]
			lines = append(lines, f.cookie(f.chunkName(i), part, maxAge, f.sameSite))
			keep = append(keep, f.chunkName(i))
		}
	}
	return append(lines, f.expireSession(r, keep)...), nil
}

var errSessionTooLarge = errors.New("the session does not fit in the cookies allowed")

// expireSession returns the Set-Cookie lines that delete the session cookies r
// carried, except those named in keep.
func (f *oidcFilter) expireSession(r *http.Request, keep []string) []string {
	var lines, seen []string
	for _, c := range r.Cookies() {
		if c.Name == f.cookieName || (f.ownCookie(c.Name) && !strings.HasPrefix(c.Name, f.cookieName+"-flow-")) {
			if !slices.Contains(keep, c.Name) && !slices.Contains(seen, c.Name) {
				seen = append(seen, c.Name)
				lines = append(lines, f.cookie(c.Name, "", -1, f.sameSite))
			}
		}
	}
	return lines
}

// flowCookies lists the names of the flow cookies r carries.
func (f *oidcFilter) flowCookies(r *http.Request) []string {
	var names []string
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, f.cookieName+"-flow-") && !slices.Contains(names, c.Name) {
			names = append(names, c.Name)
		}
	}
	return names
}

// cookie renders one Set-Cookie line. Every cookie of the filter is Secure (a
// session must never travel in clear text), HttpOnly (scripts have no use for
// it), host-only and for the whole site, which is what the __Host- prefix of the
// default name demands (RFC 6265bis §4.1.3.2). maxAge < 0 deletes.
func (f *oidcFilter) cookie(name, value string, maxAge int, sameSite http.SameSite) string {
	c := http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, Secure: true, HttpOnly: true, SameSite: sameSite}
	return c.String()
}

// stripCookies removes the filter's cookies from the Cookie headers of h (which
// the caller owns), keeping the others byte for byte, and folds what is left into
// one header (RFC 6265 §5.4).
func (f *oidcFilter) stripCookies(h http.Header) {
	vals := h["Cookie"]
	if len(vals) == 0 {
		return
	}
	var kept []string
	for _, v := range vals {
		for _, part := range strings.Split(v, ";") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			name, _, _ := strings.Cut(part, "=")
			if !f.ownCookie(strings.TrimSpace(name)) {
				kept = append(kept, part)
			}
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{strings.Join(kept, "; ")}
}

// cookieWriter adds Set-Cookie lines to the response just before its header goes
// out. The proxy copies the upstream's response header over the map, replacing a
// Set-Cookie set earlier, so the session re-issued after a refresh is added again
// here, after the upstream's own cookies. Per request, one goroutine.
type cookieWriter struct {
	rw      http.ResponseWriter
	lines   []string
	applied bool
}

func (w *cookieWriter) Header() http.Header { return w.rw.Header() }

func (w *cookieWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.apply()
	}
	w.rw.WriteHeader(code)
}

func (w *cookieWriter) Write(b []byte) (int, error) {
	w.apply()
	return w.rw.Write(b)
}

// FlushError is what http.ResponseController.Flush calls; a flush before any
// write sends the header, so the cookies are added first.
func (w *cookieWriter) FlushError() error {
	w.apply()
	return http.NewResponseController(w.rw).Flush()
}

// Flush makes the writer an http.Flusher for code that type-asserts (the proxy's
// streaming does).
func (w *cookieWriter) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach the server's writer.
func (w *cookieWriter) Unwrap() http.ResponseWriter { return w.rw }

func (w *cookieWriter) apply() {
	if w.applied {
		return
	}
	w.applied = true
	addCookies(w.rw.Header(), w.lines)
}

// addCookies appends the lines that h does not have yet.
func addCookies(h http.Header, lines []string) {
	for _, l := range lines {
		if !slices.Contains(h["Set-Cookie"], l) {
			h["Set-Cookie"] = append(h["Set-Cookie"], l)
		}
	}
}
