package admin

import (
	"fmt"
	"strings"
)

// diffContext is the number of unchanged lines shown around a change, as diff -u.
const diffContext = 3

// maxDiffEdits bounds the work (and memory, which grows with its square) of the
// shortest-edit search. Two documents further apart than this are shown as all of
// one removed and all of the other added: still a correct diff, only longer.
const maxDiffEdits = 1000

type opKind byte

const (
	opEqual  opKind = ' '
	opDelete opKind = '-'
	opInsert opKind = '+'
)

type diffOp struct {
	kind opKind
	line string // with its "\n", if it has one
}

// unifiedDiff returns the unified diff (diff -u) that turns a into b, labelled
// fromLabel and toLabel, or "" when they are equal.
func unifiedDiff(fromLabel, toLabel string, a, b []byte) string {
	if string(a) == string(b) {
		return ""
	}
	ops := editScript(splitLines(string(a)), splitLines(string(b)))
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", fromLabel, toLabel)
	for _, h := range hunks(ops) {
		writeHunk(&out, ops, h)
	}
	return out.String()
}

// splitLines splits s after every "\n"; a last line without one is kept as is.
func splitLines(s string) []string {
	var lines []string
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i+1])
		s = s[i+1:]
	}
	return lines
}

// editScript finds a shortest sequence of line deletions and insertions from a to
// b (Myers, "An O(ND) Difference Algorithm and Its Variations", 1986).
func editScript(a, b []string) []diffOp {
	n, m := len(a), len(b)
	maxD := min(n+m, maxDiffEdits)
	// v[k+off] is the furthest x reached on diagonal k (x-y = k). trace[d] keeps
	// v for diagonals -d-1..d+1 as it was before step d, to walk back the path.
	off := maxD + 1
	v := make([]int, 2*maxD+3)
	var trace [][]int
	for d := 0; d <= maxD; d++ {
		trace = append(trace, append([]int(nil), v[off-d-1:off+d+2]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: an insertion
			} else {
				x = v[off+k-1] + 1 // right: a deletion
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = x
			if x >= n && y >= m {
				return backtrack(a, b, trace, d)
			}
		}
	}
	// Too far apart for the bounded search: replace everything.
	ops := make([]diffOp, 0, n+m)
	for _, l := range a {
		ops = append(ops, diffOp{opDelete, l})
	}
	for _, l := range b {
		ops = append(ops, diffOp{opInsert, l})
	}
	return ops
}

// backtrack walks the path found in D steps from its end to its start.
func backtrack(a, b []string, trace [][]int, D int) []diffOp {
	at := func(d, k int) int { return trace[d][k+d+1] }
	x, y := len(a), len(b)
	var rev []diffOp
	for d := D; d > 0; d-- {
		k := x - y
		var prevK int
		if k == -d || (k != d && at(d, k-1) < at(d, k+1)) {
			prevK = k + 1
		} else {
			prevK = k - 1
		}
		prevX := at(d, prevK)
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			rev = append(rev, diffOp{opEqual, a[x-1]})
			x, y = x-1, y-1
		}
		if x == prevX {
			rev = append(rev, diffOp{opInsert, b[y-1]})
		} else {
			rev = append(rev, diffOp{opDelete, a[x-1]})
		}
		x, y = prevX, prevY
	}
	for x > 0 && y > 0 {
		rev = append(rev, diffOp{opEqual, a[x-1]})
		x, y = x-1, y-1
	}
	ops := make([]diffOp, len(rev))
	for i, op := range rev {
		ops[len(rev)-1-i] = op
	}
	return ops
}

// hunk is a range of ops [start, end) shown together.
type hunk struct{ start, end int }

// hunks groups changes with diffContext lines around each; changes closer than
// twice that share a hunk.
func hunks(ops []diffOp) []hunk {
	var out []hunk
	for i := 0; i < len(ops); i++ {
		if ops[i].kind == opEqual {
			continue
		}
		start := max(0, i-diffContext)
		if len(out) > 0 && start <= out[len(out)-1].end {
			start = out[len(out)-1].start
			out = out[:len(out)-1]
		}
		// Extend over this run of changes, then the trailing context.
		j := i
		for j < len(ops) && ops[j].kind != opEqual {
			j++
		}
		end := min(len(ops), j+diffContext)
		out = append(out, hunk{start, end})
		i = j - 1
	}
	return out
}

func writeHunk(out *strings.Builder, ops []diffOp, h hunk) {
	// Line numbers (1-based) where the hunk starts in a and b.
	aLine, bLine := 1, 1
	for _, op := range ops[:h.start] {
		if op.kind != opInsert {
			aLine++
		}
		if op.kind != opDelete {
			bLine++
		}
	}
	aLen, bLen := 0, 0
	for _, op := range ops[h.start:h.end] {
		if op.kind != opInsert {
			aLen++
		}
		if op.kind != opDelete {
			bLen++
		}
	}
	fmt.Fprintf(out, "@@ -%s +%s @@\n", hunkRange(aLine, aLen), hunkRange(bLine, bLen))
	for _, op := range ops[h.start:h.end] {
		out.WriteByte(byte(op.kind))
		out.WriteString(op.line)
		if !strings.HasSuffix(op.line, "\n") {
			out.WriteString("\n\\ No newline at end of file\n")
		}
	}
}

// hunkRange writes "start,len" as diff -u does: ",1" is left out, and an empty
// range names the line before it.
func hunkRange(start, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", start-1)
	case 1:
		return fmt.Sprint(start)
	default:
		return fmt.Sprintf("%d,%d", start, n)
	}
}
