package upstream

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
)

// Sticky cookies (MS-SS-10) pin a client to an endpoint. The value must not be
// forgeable (a client must not be able to aim at an endpoint of its choice, or
// pile onto one) and should not reveal internal addresses, so it names the
// endpoint by an opaque id and carries an HMAC-SHA256 tag:
//
//	base64url( id[8] | expiry[8] | tag[16] )     43 characters
//
// id is HMAC(key, "e" | addr)[:8]; expiry is unix seconds, 0 for a session
// cookie; tag is HMAC(key, "c" | id | expiry)[:16]. key is derived from the
// secret and the cluster name, so a cookie of one cluster is void on another.

const (
	minSecretBytes  = 32
	stickyRawLen    = 32
	stickyEncodeLen = 43 // base64.RawURLEncoding.EncodedLen(stickyRawLen)
)

type sticky struct {
	name string
	ttl  time.Duration
	key  []byte
	macs sync.Pool // *macState: hmac.New allocates, and Pick verifies a cookie per request
}

// processSecret is the key used when no secretFile is given: one per process, so
// that cookies survive config reloads, if not restarts.
var processSecret struct {
	once sync.Once
	key  []byte
}

func newSticky(cluster string, sc *config.StickyCookie, log *slog.Logger) (*sticky, error) {
	const field = "loadBalancer.stickyCookie"
	bad := func(f string, err error) error { return &FieldError{Field: field + f, Err: err} }
	if sc.Name == "" {
		return nil, bad(".name", fmt.Errorf("required"))
	}
	if err := (&http.Cookie{Name: sc.Name, Value: "x"}).Valid(); err != nil {
		return nil, bad(".name", fmt.Errorf("%q is not a cookie name", sc.Name))
	}
	var secret []byte
	if sc.SecretFile != "" {
		b, err := os.ReadFile(sc.SecretFile)
		if err != nil {
			return nil, bad(".secretFile", err)
		}
		if len(b) < minSecretBytes {
			return nil, bad(".secretFile", fmt.Errorf("%s holds %d bytes; at least %d are required", sc.SecretFile, len(b), minSecretBytes))
		}
		secret = b
	} else {
		processSecret.once.Do(func() {
			processSecret.key = make([]byte, minSecretBytes)
			rand.Read(processSecret.key) // never fails (crypto/rand since Go 1.24)
			log.Warn("stickyCookie has no secretFile: using a random key made at start; sticky cookies will not survive a restart")
		})
		secret = processSecret.key
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("portcullis/sticky/v1\x00" + cluster))
	s := &sticky{name: sc.Name, key: m.Sum(nil)}
	if sc.TTL != nil {
		s.ttl = sc.TTL.D()
	}
	s.macs.New = func() any { return &macState{h: hmac.New(sha256.New, s.key)} }
	return s, nil
}

// macState is a reusable HMAC with scratch space. Everything the hash sees
// lives in it, because a slice passed to an interface method escapes: buffers on
// the stack would be moved to the heap on every request.
type macState struct {
	h   hash.Hash
	in  [1 + 16]byte // 'c' | id | expiry
	enc [stickyEncodeLen]byte
	raw [stickyRawLen]byte
	sum [sha256.Size]byte
}

func (s *sticky) get() *macState   { return s.macs.Get().(*macState) }
func (s *sticky) put(st *macState) { s.macs.Put(st) }

func (s *sticky) endpointID(addr string) [8]byte {
	m := hmac.New(sha256.New, s.key) // once per endpoint: no need for the pool
	m.Write([]byte("e" + addr))
	return [8]byte(m.Sum(nil)[:8])
}

// tag computes HMAC(key, 'c' | st.raw[:16]) into st.sum; the tag is its first
// 16 bytes.
func (st *macState) tag() {
	st.in[0] = 'c'
	copy(st.in[1:], st.raw[:16])
	st.h.Reset()
	st.h.Write(st.in[:])
	st.h.Sum(st.sum[:0])
}

func (s *sticky) encode(id [8]byte, expiry int64) string {
	st := s.get()
	defer s.put(st)
	copy(st.raw[:8], id[:])
	binary.BigEndian.PutUint64(st.raw[8:16], uint64(expiry))
	st.tag()
	copy(st.raw[16:], st.sum[:16])
	return base64.RawURLEncoding.EncodeToString(st.raw[:])
}

// decode returns the id and expiry of a valid, unexpired cookie value.
func (s *sticky) decode(v string, now time.Time) (id [8]byte, expiry int64, ok bool) {
	if len(v) != stickyEncodeLen {
		return id, 0, false
	}
	st := s.get()
	defer s.put(st)
	copy(st.enc[:], v)
	if n, err := base64.RawURLEncoding.Decode(st.raw[:], st.enc[:]); err != nil || n != stickyRawLen {
		return id, 0, false
	}
	st.tag()
	if !hmac.Equal(st.sum[:16], st.raw[16:]) {
		return id, 0, false
	}
	expiry = int64(binary.BigEndian.Uint64(st.raw[8:16]))
	if expiry != 0 && now.Unix() >= expiry {
		return id, 0, false
	}
	return [8]byte(st.raw[:8]), expiry, true
}

// lookup returns the endpoint a valid cookie on req names, or nil.
func (s *sticky) lookup(hs *hostSet, req *http.Request, now time.Time) *Endpoint {
	v, ok := cookieValue(req.Header, s.name)
	if !ok {
		return nil
	}
	id, _, ok := s.decode(v, now)
	if !ok {
		return nil
	}
	return hs.byID[id]
}

// StickyCookie returns the cookie to set on the response so that the client's
// next requests go to ep, or nil when the cluster has no stickyCookie or req
// already carries a valid cookie for ep (one with a TTL is renewed once half of
// it has passed). The cookie is HttpOnly, SameSite=Lax, Path=/, and Secure when
// req came over TLS.
func (c *Cluster) StickyCookie(ep *Endpoint, req *http.Request) *http.Cookie {
	s := c.sticky
	if s == nil || ep == nil {
		return nil
	}
	now := c.now()
	if req != nil {
		if v, ok := cookieValue(req.Header, s.name); ok {
			id, expiry, ok := s.decode(v, now)
			if ok && id == ep.stickyID && (expiry == 0 || time.Unix(expiry, 0).Sub(now) > s.ttl/2) {
				return nil
			}
		}
	}
	var expiry int64
	ck := &http.Cookie{
		Name:     s.name,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   req != nil && req.TLS != nil,
	}
	if s.ttl > 0 {
		expiry = now.Add(s.ttl).Unix()
		ck.MaxAge = max(1, int(s.ttl/time.Second))
	}
	ck.Value = s.encode(ep.stickyID, expiry)
	return ck
}

// cookieValue returns the value of the first cookie called name in h, without
// the allocations of http.Request.Cookie (which parses every cookie).
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}
