// Package grpctimeout reads and writes the grpc-timeout header of the gRPC over
// HTTP/2 protocol: 1 to 8 ASCII digits and a unit (H, M, S, m, u, n). The core's
// forwarder bounds upstream calls by it, and the transcoder sets it on the calls
// it makes.
//
// It is not for: deadlines themselves (the caller puts the duration into a
// context or a timer).
package grpctimeout

import (
	"math"
	"strconv"
	"time"
)

// Parse reads a grpc-timeout value. Anything but 1 to 8 digits (no sign) and a
// known unit is refused; a value longer than a time.Duration holds is read as the
// longest one.
func Parse(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > int64(math.MaxInt64/unit) {
		// 99999999H is legal and longer than a Duration holds: it means "no
		// tighter bound than ours", not a negative overflow.
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(n) * unit, true
}

// Format writes d as a grpc-timeout value, in the finest unit that fits eight
// digits, rounding up so that the receiver never sees less time than d. A
// non-positive d is "1n": already due.
func Format(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		unit time.Duration
		c    byte
	}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}} {
		if v := ceilDiv(d, u.unit); v < 1e8 {
			return strconv.FormatInt(v, 10) + string(u.c)
		}
	}
	return strconv.FormatInt(min(ceilDiv(d, time.Hour), 1e8-1), 10) + "H"
}

// ceilDiv is d/unit rounded up, without the overflow of (d+unit-1)/unit.
func ceilDiv(d, unit time.Duration) int64 {
	v := int64(d / unit)
	if d%unit != 0 {
		v++
	}
	return v
}
