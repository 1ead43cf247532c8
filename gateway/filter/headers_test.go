package filter_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
)

func TestSameHeaderName(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"X-User", "X-User", true},
		{"x-user", "X-User", true},
		{"X_User", "X-User", true},
		{"X-USER", "x_user", true},
		{"X__User", "X--USER", true},
		{"", "", true},
		{"X-User", "X-Users", false},
		{"X-User", "X-Usex", false},
		{"X.User", "X-User", false},
		{"@", "`", false}, // 0x40 and 0x60: only A-Z fold
		{"[", "{", false},
		{"X-Üser", "X-üser", false}, // ASCII only, as header names are
	} {
		if got := filter.SameHeaderName(tc.a, tc.b); got != tc.want {
			t.Errorf("SameHeaderName(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := filter.SameHeaderName(tc.b, tc.a); got != tc.want {
			t.Errorf("SameHeaderName(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

// FuzzSameHeaderName compares SameHeaderName with a plain statement of its rule:
// the names are equal once ASCII letters are lowered and "_" made "-".
func FuzzSameHeaderName(f *testing.F) {
	f.Add("X-User", "x_user")
	f.Add("Authorization", "AUTHORIZATION")
	f.Add("a", "b")
	f.Fuzz(func(t *testing.T, a, b string) {
		fold := func(s string) string {
			out := []byte(s)
			for i, c := range out {
				switch {
				case c == '_':
					out[i] = '-'
				case 'A' <= c && c <= 'Z':
					out[i] = c + 'a' - 'A'
				}
			}
			return string(out)
		}
		want := fold(a) == fold(b)
		if got := filter.SameHeaderName(a, b); got != want {
			t.Errorf("SameHeaderName(%q, %q) = %v, want %v", a, b, got, want)
		}
		if !filter.SameHeaderName(a, a) {
			t.Errorf("SameHeaderName(%q, itself) = false", a)
		}
	})
}

func TestReservedRequestHeader(t *testing.T) {
	reserved := []string{
		"Authorization", "Proxy-Authorization", "Cookie", "Host", "Content-Length",
		"Content-Type", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection",
		"Te", "Trailer", "Upgrade", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "Traceparent", "Tracestate", "Set-Cookie",
	}
	for _, h := range reserved {
		if !filter.ReservedRequestHeader(h) {
			t.Errorf("ReservedRequestHeader(%q) = false", h)
		}
		if lower := strings.ToLower(h); !filter.ReservedRequestHeader(lower) {
			t.Errorf("ReservedRequestHeader(%q) = false", lower)
		}
	}
	for _, h := range []string{"X-User", "X-Forwarded-Port", "Accept", ""} {
		if filter.ReservedRequestHeader(h) {
			t.Errorf("ReservedRequestHeader(%q) = true", h)
		}
	}
}

func TestQuotable(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"portcullis", true},
		{"my realm ~!#", true},
		{"", true},
		{`a"b`, false},
		{`a\b`, false},
		{"a\tb", false},
		{"a\x7f", false},
		{"réalm", false},
	} {
		if got := filter.Quotable(tc.s); got != tc.want {
			t.Errorf("Quotable(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestReservedRequestHeaderSpellings(t *testing.T) {
	for _, name := range []string{"set-cookie", "Set-Cookie", "X_Forwarded_For", "x_forwarded_host", "PROXY_AUTHORIZATION", "transfer_encoding"} {
		if !filter.ReservedRequestHeader(name) {
			t.Errorf("ReservedRequestHeader(%q) = false, want true", name)
		}
	}
	for _, name := range []string{"X-User", "X_User", "X-Forwarded-User"} {
		if filter.ReservedRequestHeader(name) {
			t.Errorf("ReservedRequestHeader(%q) = true, want false", name)
		}
	}
}
