package admin

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestUnifiedDiffGolden(t *testing.T) {
	cases := []struct {
		name, a, b, want string
	}{
		{name: "equal", a: "x\ny\n", b: "x\ny\n", want: ""},
		{name: "created", a: "", b: "a\nb\n", want: "--- old\n+++ new\n@@ -0,0 +1,2 @@\n+a\n+b\n"},
		{name: "removed", a: "a\n", b: "", want: "--- old\n+++ new\n@@ -1 +0,0 @@\n-a\n"},
		{
			name: "one line changed in the middle",
			a:    "1\n2\n3\n4\n5\n6\n7\n8\n9\n",
			b:    "1\n2\n3\n4\nfive\n6\n7\n8\n9\n",
			want: "--- old\n+++ new\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n",
		},
		{
			name: "two distant changes make two hunks",
			a:    "a\n1\n2\n3\n4\n5\n6\n7\n8\nz\n",
			b:    "A\n1\n2\n3\n4\n5\n6\n7\n8\nZ\n",
			want: "--- old\n+++ new\n@@ -1,4 +1,4 @@\n-a\n+A\n 1\n 2\n 3\n@@ -7,4 +7,4 @@\n 6\n 7\n 8\n-z\n+Z\n",
		},
		{
			name: "missing final newline",
			a:    "a\nb",
			b:    "a\nb\n",
			want: "--- old\n+++ new\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := unifiedDiff("old", "new", []byte(tc.a), []byte(tc.b))
			if got != tc.want {
				t.Errorf("diff:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestUnifiedDiffPatchesBack applies every diff of random line sequences to its old
// side and checks that it gives the new side, and that the diff is minimal where
// (as many changed lines as the longest common subsequence leaves).
func TestUnifiedDiffPatchesBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a\n", "b\n", "c\n", "d\n", "e"}
	gen := func() string {
		var s strings.Builder
		for range rng.IntN(25) {
			s.WriteString(alphabet[rng.IntN(len(alphabet)-1)])
		}
		if rng.IntN(4) == 0 {
			s.WriteString(alphabet[len(alphabet)-1]) // no final newline
		}
		return s.String()
	}
	for i := range 2000 {
		a, b := gen(), gen()
		d := unifiedDiff("old", "new", []byte(a), []byte(b))
		got, err := applyUnified(a, d)
		if err != nil {
			t.Fatalf("case %d: %v\na=%q\nb=%q\ndiff:\n%s", i, err, a, b, d)
		}
		if got != b {
			t.Fatalf("case %d: patched %q, want %q\ndiff:\n%s", i, got, b, d)
		}
		if a == b && d != "" {
			t.Fatalf("case %d: equal inputs gave a diff", i)
		}
		la, lb := splitLines(a), splitLines(b)
		if got, want := changedLines(d), len(la)+len(lb)-2*lcs(la, lb); got != want {
			t.Fatalf("case %d: %d changed lines, the minimum is %d\ndiff:\n%s", i, got, want, d)
		}
	}
}

func changedLines(diff string) int {
	n := 0
	for i, l := range strings.Split(diff, "\n") {
		if i >= 2 && (strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-")) {
			n++
		}
	}
	return n
}

// lcs is the textbook dynamic programme, as an independent check of the length.
func lcs(a, b []string) int {
	dp := make([][]int, len(a)+1)
	for i := range dp {
		dp[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	return dp[0][0]
}

func TestEditScriptFallbackIsStillCorrect(t *testing.T) {
	var a, b strings.Builder
	for i := range maxDiffEdits {
		fmt.Fprintf(&a, "a%d\n", i)
		fmt.Fprintf(&b, "b%d\n", i)
	}
	d := unifiedDiff("old", "new", []byte(a.String()), []byte(b.String()))
	got, err := applyUnified(a.String(), d)
	if err != nil || got != b.String() {
		t.Fatalf("fallback diff does not patch back: %v", err)
	}
}

var hunkHeader = regexp.MustCompile(`^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@$`)

// applyUnified is a minimal patch(1): it checks every context and removed line.
func applyUnified(old, diff string) (string, error) {
	if diff == "" {
		return old, nil
	}
	a := splitLines(old)
	lines := strings.SplitAfter(diff, "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		return "", fmt.Errorf("no header")
	}
	var out []string
	pos := 0 // next line of a to copy
	for i := 2; i < len(lines) && lines[i] != ""; {
		m := hunkHeader.FindStringSubmatch(strings.TrimSuffix(lines[i], "\n"))
		if m == nil {
			return "", fmt.Errorf("line %d: not a hunk header: %q", i, lines[i])
		}
		start, _ := strconv.Atoi(m[1])
		n := 1
		if m[2] != "" {
			n, _ = strconv.Atoi(m[2])
		}
		if n > 0 {
			start-- // 0-based index of the first line
		}
		if start < pos {
			return "", fmt.Errorf("hunk at %d overlaps", start)
		}
		out = append(out, a[pos:start]...)
		pos = start
		i++
		for i < len(lines) && lines[i] != "" && !strings.HasPrefix(lines[i], "@@") {
			op, text := lines[i][0], lines[i][1:]
			i++
			if i < len(lines) && lines[i] == "\\ No newline at end of file\n" {
				text = strings.TrimSuffix(text, "\n")
				i++
			}
			switch op {
			case ' ', '-':
				if pos >= len(a) || a[pos] != text {
					return "", fmt.Errorf("context or removed line %q does not match the old side", text)
				}
				if op == ' ' {
					out = append(out, text)
				}
				pos++
			case '+':
				out = append(out, text)
			default:
				return "", fmt.Errorf("line %d: unknown operation %q", i, op)
			}
		}
	}
	out = append(out, a[pos:]...)
	return strings.Join(out, ""), nil
}
