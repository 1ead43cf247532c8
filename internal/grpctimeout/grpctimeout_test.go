package grpctimeout

import (
	"math"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"1n": time.Nanosecond, "250m": 250 * time.Millisecond, "5S": 5 * time.Second,
		"2M": 2 * time.Minute, "1H": time.Hour, "99999999u": 99999999 * time.Microsecond,
		"99999999H": time.Duration(math.MaxInt64), // longer than a Duration: the longest
	} {
		if got, ok := Parse(v); !ok || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", v, got, ok, want)
		}
	}
	for _, bad := range []string{"", "5", "S", "+5S", "-5S", "5s", "123456789S", "5 S", "5.0S", "0x5S"} {
		if got, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) = %v, accepted", bad, got)
		}
	}
}

func TestFormatRoundTrips(t *testing.T) {
	for _, d := range []time.Duration{time.Nanosecond, 1500 * time.Microsecond, 30 * time.Second, 90 * time.Minute, 200 * time.Hour} {
		v := Format(d)
		got, ok := Parse(v)
		if !ok || got < d {
			t.Errorf("Format(%v) = %q, which reads back as %v (ok %v): never less than d", d, v, got, ok)
		}
	}
	if Format(0) != "1n" || Format(-time.Second) != "1n" {
		t.Error("a past deadline is not 1n")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1n", "250m", "+5S", "99999999H"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := Parse(v)
		if !ok {
			return
		}
		if d < 0 {
			t.Fatalf("Parse(%q) = %v, negative", v, d)
		}
		if back, ok := Parse(Format(d)); !ok || back < d {
			t.Fatalf("Parse(%q) = %v, Format gives %q, read back %v", v, d, Format(d), back)
		}
	})
}
