package route

import (
	"fmt"
	"math"
	"strings"
)

// This file is the path-template parser and matcher. It is exported on its own
// (ParseTemplate, Template.Match) because the REST-to-gRPC translator reuses it
// to bind URL variables to request fields, independently of the route table.
//
// Grammar (google.api.http, https://github.com/googleapis/googleapis/blob/master/google/api/http.proto):
//
//	Template = "/" Segments [ Verb ] ;
//	Segments = Segment { "/" Segment } ;
//	Segment  = "*" | "**" | LITERAL | Variable ;
//	Variable = "{" FieldPath [ "=" Segments ] "}" ;
//	FieldPath = IDENT { "." IDENT } ;
//	Verb     = ":" LITERAL ;

// Param is one variable captured by a path template.
type Param struct {
	Name  string // the field path as written in the template, e.g. "id" or "book.name"
	Value string // the matched text as it appears in the path; not percent-decoded
}

// Params are the variables a template captured, in template order. It is a slice
// rather than a map because routes capture few variables and a map would cost an
// allocation per request.
type Params []Param

// Get returns the value of the variable called name and whether it was captured.
func (ps Params) Get(name string) (string, bool) {
	for _, p := range ps {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// TemplateError says where and why a path template is malformed. Offset is the
// byte offset in Template, so a caller can point at the column in a config file.
type TemplateError struct {
	Template string
	Offset   int
	Reason   string
}

func (e *TemplateError) Error() string {
	return fmt.Sprintf("template %q: at offset %d: %s", e.Template, e.Offset, e.Reason)
}

type segKind uint8

const (
	segLiteral    segKind = iota // matches one segment equal to lit
	segStar                      // "*": matches one non-empty segment
	segDoubleStar                // "**": matches the rest of the path, zero or more segments; last only
)

type segment struct {
	kind segKind
	lit  string
	// v is the index of the variable this segment belongs to, or -1. first and
	// last mark the variable's boundary segments, where the matcher records the
	// start and end offsets of the captured text.
	v           int16
	first, last bool
}

type tvar struct {
	name        string
	first, last int // segment range [first, last)
}

// span is the byte range of one captured variable in the matched path.
type span struct{ s, e int }

// Template is a compiled path template. It is immutable and safe for concurrent use.
type Template struct {
	raw  string
	segs []segment
	vars []tvar
	verb string // without the ':'
}

// ParseTemplate compiles a path template such as "/v1/users/{id}",
// "/files/{path=**}" or "/v1/{name=shelves/*/books/*}:publish".
//
// Literal segments may contain RFC 3986 path characters except ':' (which
// introduces the verb), and percent escapes; they are compared byte for byte with
// the request path. `*` matches exactly one non-empty segment. `**` matches zero
// or more segments, must be the last segment, and captures without a leading '/'.
// `{var}` is `{var=*}`. Variables cannot be nested, and a name may be used once.
func ParseTemplate(s string) (*Template, error) {
	p := parser{s: s, t: &Template{raw: s}}
	if err := p.parse(); err != nil {
		return nil, err
	}
	return p.t, nil
}

// String returns the template in canonical form: "{x=*}" is written "{x}".
// Parsing the result yields an equivalent template.
func (t *Template) String() string {
	var b strings.Builder
	vi := 0
	for k := 0; k < len(t.segs); {
		b.WriteByte('/')
		if vi < len(t.vars) && t.vars[vi].first == k {
			v := t.vars[vi]
			vi++
			b.WriteByte('{')
			b.WriteString(v.name)
			if v.last != k+1 || t.segs[k].kind != segStar {
				b.WriteByte('=')
				for j := k; j < v.last; j++ {
					if j > k {
						b.WriteByte('/')
					}
					b.WriteString(t.segs[j].text())
				}
			}
			b.WriteByte('}')
			k = v.last
			continue
		}
		b.WriteString(t.segs[k].text())
		k++
	}
	if t.verb != "" {
		b.WriteByte(':')
		b.WriteString(t.verb)
	}
	return b.String()
}

func (s *segment) text() string {
	switch s.kind {
	case segStar:
		return "*"
	case segDoubleStar:
		return "**"
	}
	return s.lit
}

// Vars returns the variable names in template order.
func (t *Template) Vars() []string {
	names := make([]string, len(t.vars))
	for i, v := range t.vars {
		names[i] = v.name
	}
	return names
}

// Verb returns the custom verb (the text after the final ':'), or "".
func (t *Template) Verb() string { return t.verb }

// Match reports whether path matches the template and returns the captured
// variables. It allocates only the returned Params, and only when the template
// has variables.
func (t *Template) Match(path string) (Params, bool) {
	var buf [8]span
	caps := t.capBuf(buf[:])
	if !t.match(path, caps) {
		return nil, false
	}
	return t.params(path, caps), true
}

// capBuf returns a capture buffer for t, using buf when it is large enough, so that
// a failed match (the common case while testing route candidates) allocates nothing.
func (t *Template) capBuf(buf []span) []span {
	if len(t.vars) <= len(buf) {
		return buf[:len(t.vars)]
	}
	return make([]span, len(t.vars))
}

// match walks the path one segment at a time; the grammar allows `**` only last,
// so no backtracking is needed and the cost is linear in the path length.
func (t *Template) match(path string, caps []span) bool {
	p := path
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	if t.verb != "" {
		// The verb must be attached to a segment: "/a:verb", not "/a/:verb".
		n := len(p) - len(t.verb) - 1
		if n < 1 || p[n] != ':' || p[n+1:] != t.verb || p[n-1] == '/' {
			return false
		}
		p = p[:n]
	}
	i := 1 // start of the next segment; i > len(p) means no segment is left
	for k := range t.segs {
		s := &t.segs[k]
		var start, end int
		if s.kind == segDoubleStar {
			start, end = len(p), len(p)
			if i <= len(p) {
				start = i
			}
			i = len(p) + 1
		} else {
			if i > len(p) {
				return false
			}
			e := strings.IndexByte(p[i:], '/')
			if e < 0 {
				e = len(p)
			} else {
				e += i
			}
			seg := p[i:e]
			if s.kind == segLiteral {
				if seg != s.lit {
					return false
				}
			} else if seg == "" {
				return false
			}
			start, end = i, e
			i = e + 1
		}
		if s.v >= 0 {
			if s.first {
				caps[s.v].s = start
			}
			if s.last {
				caps[s.v].e = end
			}
		}
	}
	return i > len(p)
}

func (t *Template) params(path string, caps []span) Params {
	if len(t.vars) == 0 {
		return nil
	}
	ps := make(Params, len(t.vars))
	for i, v := range t.vars {
		ps[i] = Param{Name: v.name, Value: path[caps[i].s:caps[i].e]}
	}
	return ps
}

// literalPrefix returns the leading literal segments of t: every path that
// matches t starts with them, which is what the route index relies on. With a
// verb, the last segment carries ":verb" in the path, so it is left out.
func (t *Template) literalPrefix() []string {
	n := 0
	for n < len(t.segs) && t.segs[n].kind == segLiteral {
		n++
	}
	if t.verb != "" && n == len(t.segs) {
		n--
	}
	out := make([]string, n)
	for i := range out {
		out[i] = t.segs[i].lit
	}
	return out
}

// ---------------------------------------------------------------------------
// Parser: recursive descent over bytes, one pass, no backtracking.

type parser struct {
	s     string
	pos   int
	t     *Template
	inVar bool
}

func (p *parser) fail(at int, format string, args ...any) error {
	return &TemplateError{Template: p.s, Offset: at, Reason: fmt.Sprintf(format, args...)}
}

func (p *parser) parse() error {
	if p.s == "" || p.s[0] != '/' {
		return p.fail(0, "a template starts with '/'")
	}
	p.pos = 1
	if err := p.segments(); err != nil {
		return err
	}
	if p.pos < len(p.s) && p.s[p.pos] == ':' {
		p.pos++
		verb, err := p.literal()
		if err != nil {
			return err
		}
		p.t.verb = verb
	}
	if p.pos < len(p.s) {
		return p.fail(p.pos, "unexpected %q", p.s[p.pos])
	}
	if len(p.t.vars) > math.MaxInt16 { // segment.v is an int16
		return p.fail(0, "more than %d variables", math.MaxInt16)
	}
	for i := range p.t.segs {
		p.t.segs[i].v = -1
	}
	for vi, v := range p.t.vars {
		p.t.segs[v.first].first = true
		p.t.segs[v.last-1].last = true
		for k := v.first; k < v.last; k++ {
			p.t.segs[k].v = int16(vi)
		}
	}
	return nil
}

func (p *parser) segments() error {
	for {
		if err := p.segment(); err != nil {
			return err
		}
		if p.pos >= len(p.s) || p.s[p.pos] != '/' {
			return nil
		}
		p.pos++
	}
}

func (p *parser) segment() error {
	if n := len(p.t.segs); n > 0 && p.t.segs[n-1].kind == segDoubleStar {
		return p.fail(p.pos, "'**' must be the last segment")
	}
	switch {
	case strings.HasPrefix(p.s[p.pos:], "**"):
		p.t.segs = append(p.t.segs, segment{kind: segDoubleStar})
		p.pos += 2
	case strings.HasPrefix(p.s[p.pos:], "*"):
		p.t.segs = append(p.t.segs, segment{kind: segStar})
		p.pos++
	case strings.HasPrefix(p.s[p.pos:], "{"):
		return p.variable()
	default:
		lit, err := p.literal()
		if err != nil {
			return err
		}
		p.t.segs = append(p.t.segs, segment{kind: segLiteral, lit: lit})
	}
	return nil
}

func (p *parser) variable() error {
	if p.inVar {
		return p.fail(p.pos, "variables cannot be nested")
	}
	p.pos++ // '{'
	nameAt := p.pos
	name, err := p.fieldPath()
	if err != nil {
		return err
	}
	for _, v := range p.t.vars {
		if v.name == name {
			return p.fail(nameAt, "variable %q is defined twice", name)
		}
	}
	first := len(p.t.segs)
	if p.pos < len(p.s) && p.s[p.pos] == '=' {
		p.pos++
		p.inVar = true
		err := p.segments()
		p.inVar = false
		if err != nil {
			return err
		}
	} else {
		p.t.segs = append(p.t.segs, segment{kind: segStar})
	}
	if p.pos >= len(p.s) || p.s[p.pos] != '}' {
		return p.fail(p.pos, "variable %q is not closed, want '}'", name)
	}
	p.pos++
	p.t.vars = append(p.t.vars, tvar{name: name, first: first, last: len(p.t.segs)})
	return nil
}

func (p *parser) fieldPath() (string, error) {
	start := p.pos
	for {
		identAt := p.pos
		for p.pos < len(p.s) && isIdentByte(p.s[p.pos], p.pos == identAt) {
			p.pos++
		}
		if p.pos == identAt {
			return "", p.fail(p.pos, "want a variable name (letters, digits, '_', '.')")
		}
		if p.pos >= len(p.s) || p.s[p.pos] != '.' {
			return p.s[start:p.pos], nil
		}
		p.pos++
	}
}

func (p *parser) literal() (string, error) {
	start := p.pos
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if c == '%' {
			if p.pos+2 >= len(p.s) || !isHex(p.s[p.pos+1]) || !isHex(p.s[p.pos+2]) {
				return "", p.fail(p.pos, "'%%' must start a percent escape such as %%2F")
			}
			p.pos += 3
			continue
		}
		if !isLiteralByte(c) {
			break
		}
		p.pos++
	}
	if p.pos == start {
		if p.pos < len(p.s) && p.s[p.pos] != '/' && p.s[p.pos] != '}' {
			return "", p.fail(p.pos, "unexpected %q", p.s[p.pos])
		}
		return "", p.fail(p.pos, "empty segment (no '//', no trailing '/', no empty verb)")
	}
	return p.s[start:p.pos], nil
}

func isIdentByte(c byte, first bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || !first && c >= '0' && c <= '9'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// isLiteralByte reports RFC 3986 pchar bytes (without pct-encoded, handled apart)
// minus ':' (the verb separator) and '*' (a wildcard here).
func isLiteralByte(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("-._~!$&'()+,;=@", c) >= 0
}
