package oidc

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func testFilter(t *testing.T) *oidcFilter {
	t.Helper()
	secret := []byte(strings.Repeat("s", 32))
	f := &oidcFilter{cookieName: DefaultCookieName, maxAge: time.Hour, now: time.Now, sameSite: http.SameSiteLaxMode}
	var err error
	if f.sessions, err = newSealer(secret, "session", "iss\x00client\x00"+DefaultCookieName); err != nil {
		t.Fatal(err)
	}
	if f.flows, err = newSealer(secret, "flow", "iss\x00client\x00"+DefaultCookieName); err != nil {
		t.Fatal(err)
	}
	return f
}

// fakeIDToken is a JWT-shaped string whose payload holds sub and a filler claim.
func fakeIDToken(pad int) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." +
		enc([]byte(`{"sub":"u1","pad":"`+strings.Repeat("p", pad)+`"}`)) + ".c2ln"
}

// requestWith returns a request carrying the cookies the Set-Cookie lines set
// (deletions left out), as a browser would send them next.
func requestWith(t *testing.T, lines []string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, l := range lines {
		c, err := http.ParseSetCookie(l)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if c.MaxAge >= 0 {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	return r
}

func TestSessionCookiesRoundTrip(t *testing.T) {
	f := testFilter(t)
	for _, tc := range []struct {
		pad        int
		wantChunks int // 0: one whole cookie
	}{{100, 0}, {2000, 0}, {4000, 2}, {12000, 6}} {
		s := &session{Subject: "u1", IDToken: fakeIDToken(tc.pad), RefreshToken: "rt", Expiry: time.Now().Add(time.Minute).Unix(), AuthTime: time.Now().Unix()}
		lines, err := f.sessionCookies(httptest.NewRequest(http.MethodGet, "/", nil), s)
		if err != nil {
			t.Fatalf("pad %d: %v", tc.pad, err)
		}
		var names []string
		for _, l := range lines {
			if len(l) > 4096 {
				t.Errorf("pad %d: a Set-Cookie line of %d bytes", tc.pad, len(l))
			}
			names = append(names, strings.SplitN(l, "=", 2)[0])
		}
		switch {
		case tc.wantChunks == 0 && !slices.Equal(names, []string{DefaultCookieName}):
			t.Errorf("pad %d: cookies %v, want one", tc.pad, names)
		case tc.wantChunks > 0 && (len(names) != tc.wantChunks || names[0] != DefaultCookieName+"-0"):
			t.Errorf("pad %d: cookies %v, want %d chunks", tc.pad, names, tc.wantChunks)
		}
		got, why := f.readSession(requestWith(t, lines))
		if why != reasonNone || got.Subject != "u1" || got.claims["pad"] != strings.Repeat("p", tc.pad) || got.RefreshToken != "rt" {
			t.Fatalf("pad %d: read back %v (%v)", tc.pad, got, why)
		}
	}

	// A chunk missing: no session, and not a crash.
	s := &session{Subject: "u1", IDToken: fakeIDToken(9000), Expiry: time.Now().Unix(), AuthTime: time.Now().Unix()}
	lines, _ := f.sessionCookies(httptest.NewRequest(http.MethodGet, "/", nil), s)
	if _, why := f.readSession(requestWith(t, slices.Delete(slices.Clone(lines), 1, 2))); why != reasonBadSession {
		t.Errorf("a session with a chunk missing: %v, want bad session", why)
	}

	// Shrinking from chunks to one cookie deletes the chunks the browser has.
	r := requestWith(t, lines)
	small := &session{Subject: "u1", IDToken: fakeIDToken(10), Expiry: time.Now().Unix(), AuthTime: time.Now().Unix()}
	out, err := f.sessionCookies(r, small)
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for _, l := range out[1:] {
		if strings.HasPrefix(l, DefaultCookieName+"-") && strings.Contains(l, "Max-Age=0") {
			deleted++
		}
	}
	if !strings.HasPrefix(out[0], DefaultCookieName+"=") || deleted != len(lines) {
		t.Errorf("shrinking from %d chunks: %q", len(lines), out)
	}

	// Too large for maxChunks.
	huge := &session{Subject: "u1", IDToken: fakeIDToken(40000), AuthTime: time.Now().Unix()}
	if _, err := f.sessionCookies(httptest.NewRequest(http.MethodGet, "/", nil), huge); err != errSessionTooLarge {
		t.Errorf("a huge session: %v, want errSessionTooLarge", err)
	}
	// Past maxAge: nothing to store.
	old := &session{Subject: "u1", IDToken: fakeIDToken(1), AuthTime: time.Now().Add(-2 * time.Hour).Unix()}
	if _, err := f.sessionCookies(httptest.NewRequest(http.MethodGet, "/", nil), old); err == nil {
		t.Error("a session past maxAge was stored")
	}
}

// TestSealerBinding: a value sealed for one purpose, client or secret never opens
// for another.
func TestSealerBinding(t *testing.T) {
	secret := []byte(strings.Repeat("a", 32))
	mk := func(secret []byte, purpose, binding string) *sealer {
		s, err := newSealer(secret, purpose, binding)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	orig := mk(secret, "session", "iss\x00client-a\x00c")
	v, err := orig.seal(map[string]string{"sub": "x"})
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	if err := mk(secret, "session", "iss\x00client-a\x00c").open(v, &out); err != nil || out["sub"] != "x" {
		t.Fatalf("the same key and binding: %v %v", err, out)
	}
	for name, other := range map[string]*sealer{
		"other client":  mk(secret, "session", "iss\x00client-b\x00c"),
		"other purpose": mk(secret, "flow", "iss\x00client-a\x00c"),
		"other secret":  mk([]byte(strings.Repeat("b", 32)), "session", "iss\x00client-a\x00c"),
	} {
		if other.open(v, &out) == nil {
			t.Errorf("%s opened the value", name)
		}
	}
	v2, _ := orig.seal(map[string]string{"sub": "x"})
	if v == v2 {
		t.Error("two seals of one value are equal: the nonce is not random")
	}
}

func TestOwnCookie(t *testing.T) {
	f := testFilter(t)
	n := DefaultCookieName
	for name, want := range map[string]bool{
		n: true, n + "-0": true, n + "-12": true, n + "-flow-abcd": true,
		n + "-": false, n + "-x": false, n + "x": false, "other": false, "portcullis-session": false,
	} {
		if got := f.ownCookie(name); got != want {
			t.Errorf("ownCookie(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestStripCookies(t *testing.T) {
	f := testFilter(t)
	n := DefaultCookieName
	h := http.Header{"Cookie": {"a=1; " + n + "=xyz; b=2", n + "-0=p; " + n + "-flow-Q=f;c=3", n + "-1=q"}}
	f.stripCookies(h)
	if got := h.Values("Cookie"); !slices.Equal(got, []string{"a=1; b=2; c=3"}) {
		t.Errorf("Cookie after strip: %q", got)
	}
	h = http.Header{"Cookie": {n + "=xyz"}}
	f.stripCookies(h)
	if _, ok := h["Cookie"]; ok {
		t.Errorf("an empty Cookie header was kept: %q", h["Cookie"])
	}
}

func TestSafeReturn(t *testing.T) {
	f := testFilter(t)
	f.redirectHosts = []string{"*.example.com", "www.example.org"}
	r := httptest.NewRequest(http.MethodGet, "https://gw.example.net/", nil)
	for _, tc := range []struct {
		rd   string
		want bool
	}{
		{"/", true}, {"/a/b?c=d#e", true}, {"https://gw.example.net/x", true}, {"https://a.example.com/x", true},
		{"https://a.b.example.com/", true}, {"https://www.example.org/", true}, {"https://WWW.Example.org/", true},
		{"//evil.example", false}, {"/\\evil.example", false}, {"/\t/evil.example", false}, {"/\n/evil", false},
		{"https://evil.example", false}, {"http://a.example.com", false}, {"https://example.com", false},
		{"https://a.example.com.evil.io", false}, {"https://u:p@a.example.com", false}, {"javascript:alert(1)", false},
		{"data:text/html,x", false}, {"https:a.example.com", false}, {"a.example.com/x", false}, {"", false},
		{"/" + strings.Repeat("a", maxReturnTo), false},
	} {
		if _, got := f.safeReturn(r, tc.rd); got != tc.want {
			t.Errorf("safeReturn(%q) = %v, want %v", tc.rd, got, tc.want)
		}
	}
}

func TestRequestReturnTo(t *testing.T) {
	for target, want := range map[string]string{
		"/a?b=c":                               "/a?b=c",
		"//evil.example/":                      "/",
		"/" + strings.Repeat("x", maxReturnTo): "/",
	} {
		r := httptest.NewRequest(http.MethodGet, "http://gw"+target, nil)
		if got := requestReturnTo(r); got != want {
			t.Errorf("requestReturnTo(%.40q) = %.40q, want %q", target, got, want)
		}
	}
}
