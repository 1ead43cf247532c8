package observe

import (
	"testing"
	"time"
)

// The limiter is tested on its own because its window is the wall-clock second:
// the black-box test (security_test.go) cannot choose when a second ends.
func TestLogLimiter(t *testing.T) {
	var l logLimiter
	t0 := time.Unix(1000, 0)
	for i := 0; i < securityLinesPerSecond; i++ {
		if ok, d := l.allow(t0.Add(time.Duration(i) * time.Millisecond)); !ok || d != 0 {
			t.Fatalf("line %d: allow = %v, %d; want true, 0", i, ok, d)
		}
	}
	for i := 0; i < 7; i++ {
		if ok, _ := l.allow(t0.Add(999 * time.Millisecond)); ok {
			t.Fatalf("line %d over the limit was allowed", securityLinesPerSecond+i)
		}
	}
	// The next second: allowed again, and the first line reports the 7 dropped.
	if ok, d := l.allow(t0.Add(time.Second)); !ok || d != 7 {
		t.Fatalf("next second: allow = %v, %d; want true, 7", ok, d)
	}
	if ok, d := l.allow(t0.Add(time.Second)); !ok || d != 0 {
		t.Fatalf("after reporting: allow = %v, %d; want true, 0", ok, d)
	}
}
