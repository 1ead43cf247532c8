package route

import (
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// This file is the per-host index that keeps Match from scanning every rule.
//
// Each rule of a bucket is filed in exactly one place:
//   - an exact path: in a map keyed by the path;
//   - any other rule: at the node of a segment trie reached by its literal leading
//     segments (a prefix's segments, a template's leading literals, the complete
//     segments of a regex's literal prefix); rules with nothing literal, and rules
//     without a path matcher, sit at the root.
//
// For a request path, the candidates are the exact-map entry plus the rules of
// every trie node on the walk down the path's segments. Filing is conservative:
// every path a rule can match walks through the rule's node, so the candidates
// are a superset of the matching rules and the full test (rule.match) decides.
// Every list holds rule ids in ascending order, and the lists are merged on the
// fly, so candidates are tried in declaration order and the first full match wins.

// bucket is the index of the rules of one host (or wildcard, or catch-all).
type bucket struct {
	exact map[string][]int32
	root  node
	last  int32 // last rule added, so a rule listing a host twice is filed once
}

type node struct {
	rules    []int32
	children map[string]*node
}

func newBucket() *bucket { return &bucket{last: -1} }

func (b *bucket) add(id int32, ru *rule) {
	if b.last == id {
		return
	}
	b.last = id
	if ru.kind == pathExact {
		if b.exact == nil {
			b.exact = make(map[string][]int32)
		}
		b.exact[ru.path] = append(b.exact[ru.path], id)
		return
	}
	n := &b.root
	for _, seg := range ru.index {
		c := n.children[seg]
		if c == nil {
			if n.children == nil {
				n.children = make(map[string]*node)
			}
			c = &node{}
			n.children[seg] = c
		}
		n = c
	}
	n.rules = append(n.rules, id)
}

// maxInlineLists is how many candidate lists Match gathers without allocating:
// one for the exact map, one for the root, one per path segment that has rules.
const maxInlineLists = 16

// lists appends to out the candidate lists for path, in no particular order.
func (b *bucket) lists(path string, out [][]int32) [][]int32 {
	if l := b.exact[path]; len(l) > 0 {
		out = append(out, l)
	}
	n := &b.root
	if len(n.rules) > 0 {
		out = append(out, n.rules)
	}
	if path == "" || path[0] != '/' {
		return out
	}
	rest := path[1:]
	for n.children != nil {
		seg := rest
		j := strings.IndexByte(rest, '/')
		if j >= 0 {
			seg = rest[:j]
		}
		n = n.children[seg]
		if n == nil {
			break
		}
		if len(n.rules) > 0 {
			out = append(out, n.rules)
		}
		if j < 0 {
			break
		}
		rest = rest[j+1:]
	}
	return out
}

// prefixIndex files a prefix under its segments: "/api/v1" and "/api/v1/" both
// under api/v1. Every path the prefix matches has those leading segments.
func prefixIndex(prefix string) []string {
	p := strings.TrimSuffix(prefix[1:], "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// regexIndex files a regex under the complete segments of its literal prefix:
// "/api/v1/[0-9]+" under api/v1, "/api/v1x.*" under api only (the last piece may
// continue past what is literal). Anything it cannot prove goes to the root.
func regexIndex(expr string) []string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	var b strings.Builder
	literalPrefix(re, &b)
	lit := b.String()
	if !strings.HasPrefix(lit, "/") {
		return nil
	}
	pieces := strings.Split(lit[1:], "/")
	return pieces[:len(pieces)-1]
}

// literalPrefix writes the text every match of re must start with, and reports
// whether re is entirely literal (so that the caller may continue with what
// follows). Case-folded literals stop it: their bytes are not fixed. So does any
// non-ASCII rune: the matcher decodes invalid UTF-8 in the path as U+FFFD, so a
// literal rune does not pin the path's bytes.
func literalPrefix(re *syntax.Regexp, b *strings.Builder) bool {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return false
		}
		for _, r := range re.Rune {
			if r >= utf8.RuneSelf {
				return false
			}
			b.WriteByte(byte(r))
		}
		return true
	case syntax.OpEmptyMatch, syntax.OpBeginText:
		return true
	case syntax.OpCapture:
		return literalPrefix(re.Sub[0], b)
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if !literalPrefix(s, b) {
				return false
			}
		}
		return true
	}
	return false
}
