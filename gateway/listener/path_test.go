package listener

import (
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
)

func policy(merge bool, slashes string) config.PathPolicy {
	return config.PathPolicy{MergeSlashes: &merge, EscapedSlashes: slashes}
}

func TestNormalize(t *testing.T) {
	def := NewPathNormalizer(config.PathPolicy{})
	keep := NewPathNormalizer(policy(true, config.EscapedSlashesKeep))
	decode := NewPathNormalizer(policy(true, config.EscapedSlashesDecode))
	noMerge := NewPathNormalizer(policy(false, ""))
	for _, tc := range []struct {
		n      PathNormalizer
		in     string
		want   string
		reason string
	}{
		{def, "", "/", ""},
		{def, "/", "/", ""},
		{def, "/a/b/c", "/a/b/c", ""},
		{def, "/a/b/", "/a/b/", ""},
		{def, "/%41%62%2d%2E%5f%7E", "/Ab-._~", ""},
		{def, "/a%3ab%3Fc%20d", "/a%3Ab%3Fc%20d", ""},
		{def, "/a/./b/../c", "/a/c", ""},
		{def, "/a/%2e/b/%2E%2e/c", "/a/c", ""},
		{def, "/a/.%2e", "/", ""},
		{def, "/a/b/..", "/a/", ""},
		{def, "/a/b/.", "/a/b/", ""},
		{def, "/.", "/", ""},
		{def, "/..", "", ReasonAboveRoot},
		{def, "/a/../..", "", ReasonAboveRoot},
		{def, "/a/../%2e%2e/etc/passwd", "", ReasonAboveRoot},
		{def, "//a///b//", "/a/b/", ""},
		{def, "//", "/", ""},
		{def, "/a/..//b", "/b", ""},
		{def, "/...", "/...", ""},
		{def, "/.a/..b/c.", "/.a/..b/c.", ""},
		{def, "/a%2Fb", "", ReasonEscapedSlash},
		{def, "/a%5cb", "", ReasonEscapedSlash},
		{def, "/a\\b", "", ReasonBackslash},
		{def, "/a%00", "", ReasonControl},
		{def, "/a%0d%0a", "", ReasonControl},
		{def, "/a\x7f", "", ReasonControl},
		{def, "/a\tb", "", ReasonControl},
		{def, "/a%7f", "", ReasonControl},
		{def, "/a%", "", ReasonBadEscape},
		{def, "/a%2", "", ReasonBadEscape},
		{def, "/a%zz", "", ReasonBadEscape},
		{def, "a/b", "", ReasonNotAbsolute},
		{def, "*", "", ReasonNotAbsolute},
		{def, "/a b/\"é\"", "/a%20b/%22%C3%A9%22", ""},
		{def, "/!$&'()*+,;=:@", "/!$&'()*+,;=:@", ""},
		{keep, "/a%2fb/../c%5C", "/c%5C", ""},
		{keep, "/a/..%2F..%2Fx", "/a/..%2F..%2Fx", ""},
		{decode, "/a%2Fb", "/a/b", ""},
		{decode, "/a%2F..%2F..%2Fb", "", ReasonAboveRoot},
		{decode, "/a%2F%2F%5Cb", "/a/b", ""},
		{decode, "/a/b%2F..%2F", "/a/", ""},
		{noMerge, "//a//b/", "//a//b/", ""},
		{noMerge, "/a//..", "/a/", ""},
		{noMerge, "//..", "/", ""},
		{noMerge, "/a//../b", "/a/b", ""},
	} {
		got, reason, ok := tc.n.Normalize(tc.in)
		if got != tc.want || reason != tc.reason || ok != (tc.reason == "") {
			t.Errorf("Normalize(%q) = %q, %q, %v; want %q, %q", tc.in, got, reason, ok, tc.want, tc.reason)
		}
		if ok {
			if again, _, _ := tc.n.Normalize(got); again != got {
				t.Errorf("Normalize(%q) = %q, not idempotent: %q", tc.in, got, again)
			}
		}
	}
}

func TestNormalizeNoAllocation(t *testing.T) {
	n := NewPathNormalizer(config.PathPolicy{})
	p := "/api/v1/users/12345/orders%3A2024/items"
	if allocs := testing.AllocsPerRun(100, func() { n.Normalize(p) }); allocs != 0 {
		t.Fatalf("%v allocations for a path already normal", allocs)
	}
}
