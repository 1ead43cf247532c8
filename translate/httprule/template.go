// Package httprule parses the path templates of google.api.http rules, compiles a
// service's rules into a matcher, and matches a request's method and path against
// it, returning the binding and the values of its path variables.
//
// The grammar is the one google/api/http.proto documents:
//
//	Template = "/" Segments [ Verb ] ;
//	Segments = Segment { "/" Segment } ;
//	Segment  = "*" | "**" | LITERAL | Variable ;
//	Variable = "{" FieldPath [ "=" Segments ] "}" ;
//	FieldPath = IDENT { "." IDENT } ;
//	Verb     = ":" LITERAL ;
//
// It works on strings only: it knows nothing of protobuf messages, and leaves
// putting the captured values into fields to the transcoder (package translate).
// It is not for routing HTTP requests between services; that is gateway/route.
package httprule

import (
	"errors"
	"fmt"
	"strings"
)

// SegmentKind says what one segment of a template matches.
type SegmentKind uint8

const (
	// Literal matches exactly its text.
	Literal SegmentKind = iota
	// Wildcard ("*") matches one segment.
	Wildcard
	// DeepWildcard ("**") matches zero or more segments; it can only be last.
	DeepWildcard
)

// Segment is one path segment of a template.
type Segment struct {
	Kind SegmentKind
	// Text is the literal's text, unescaped; empty for wildcards.
	Text string
}

// Variable is a {field.path=...} of a template: the segments from Start (inclusive)
// to End (exclusive) are captured into the field named by FieldPath.
type Variable struct {
	FieldPath []string
	Start     int
	End       int
}

// Field returns the variable's field path joined with dots ("book.name").
func (v Variable) Field() string { return strings.Join(v.FieldPath, ".") }

// Template is a parsed path template. Its zero value is not valid; use Parse.
type Template struct {
	Segments  []Segment
	Variables []Variable
	// Verb is the custom verb after ':' in the last segment ("cancel"), or "".
	Verb string
	raw  string
}

// String returns the template as written.
func (t *Template) String() string { return t.raw }

// maxTemplateLen bounds a template, which comes from a config or descriptor file:
// a longer one is a mistake, not a path anyone routes on.
const maxTemplateLen = 4096

// ParseError says what is wrong with a template and where.
type ParseError struct {
	Template string
	Offset   int
	Reason   string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("path template %q: at offset %d: %s", e.Template, e.Offset, e.Reason)
}

// Parse parses a path template.
func Parse(tmpl string) (*Template, error) {
	if len(tmpl) > maxTemplateLen {
		return nil, &ParseError{Template: tmpl[:64] + "...", Offset: maxTemplateLen, Reason: fmt.Sprintf("longer than %d bytes", maxTemplateLen)}
	}
	p := &parser{in: tmpl}
	t, err := p.template()
	if err != nil {
		return nil, err
	}
	t.raw = tmpl
	return t, nil
}

type parser struct {
	in  string
	pos int
	t   Template
	// inVariable is true inside {...}: variables do not nest.
	inVariable bool
}

func (p *parser) fail(format string, args ...any) error {
	return &ParseError{Template: p.in, Offset: p.pos, Reason: fmt.Sprintf(format, args...)}
}

func (p *parser) peek() byte {
	if p.pos < len(p.in) {
		return p.in[p.pos]
	}
	return 0
}

func (p *parser) template() (*Template, error) {
	if p.peek() != '/' {
		return nil, p.fail("must start with '/'")
	}
	p.pos++
	if err := p.segments(); err != nil {
		return nil, err
	}
	if p.peek() == ':' {
		p.pos++
		verb, err := p.literal()
		if err != nil {
			return nil, err
		}
		if verb == "" {
			return nil, p.fail("empty verb after ':'")
		}
		p.t.Verb = verb
	}
	if p.pos != len(p.in) {
		return nil, p.fail("unexpected %q", p.in[p.pos])
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return &p.t, nil
}

func (p *parser) segments() error {
	for {
		if err := p.segment(); err != nil {
			return err
		}
		if p.peek() != '/' {
			return nil
		}
		p.pos++
	}
}

func (p *parser) segment() error {
	switch {
	case strings.HasPrefix(p.in[p.pos:], "**"):
		p.pos += 2
		p.t.Segments = append(p.t.Segments, Segment{Kind: DeepWildcard})
	case p.peek() == '*':
		p.pos++
		p.t.Segments = append(p.t.Segments, Segment{Kind: Wildcard})
	case p.peek() == '{':
		return p.variable()
	default:
		lit, err := p.literal()
		if err != nil {
			return err
		}
		if lit == "" {
			return p.fail("empty segment")
		}
		p.t.Segments = append(p.t.Segments, Segment{Kind: Literal, Text: lit})
	}
	return nil
}

func (p *parser) variable() error {
	if p.inVariable {
		return p.fail("variables cannot nest")
	}
	p.pos++ // '{'
	var path []string
	for {
		id := p.ident()
		if id == "" {
			return p.fail("expected a field name")
		}
		path = append(path, id)
		if p.peek() != '.' {
			break
		}
		p.pos++
	}
	start := len(p.t.Segments)
	switch p.peek() {
	case '=':
		p.pos++
		p.inVariable = true
		if err := p.segments(); err != nil {
			return err
		}
		p.inVariable = false
	case '}':
		// {name} is {name=*}.
		p.t.Segments = append(p.t.Segments, Segment{Kind: Wildcard})
	default:
		return p.fail("expected '=' or '}' after the field path")
	}
	if p.peek() != '}' {
		return p.fail("unclosed variable")
	}
	p.pos++
	p.t.Variables = append(p.t.Variables, Variable{FieldPath: path, Start: start, End: len(p.t.Segments)})
	return nil
}

// ident reads [A-Za-z_][A-Za-z0-9_]*.
func (p *parser) ident() string {
	start := p.pos
	for p.pos < len(p.in) {
		c := p.in[p.pos]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || p.pos > start && c >= '0' && c <= '9' {
			p.pos++
			continue
		}
		break
	}
	return p.in[start:p.pos]
}

// literal reads a literal up to the next '/', ':', '{', '}', '*', '=' or the end,
// and unescapes it. RFC 3986 pchar is allowed, less ':' (the verb separator).
func (p *parser) literal() (string, error) {
	start := p.pos
	for p.pos < len(p.in) {
		c := p.in[p.pos]
		if c == '/' || c == ':' || c == '{' || c == '}' || c == '*' || c == '=' {
			break
		}
		if !pchar(c) && c != '%' {
			return "", p.fail("character %q is not allowed in a path", c)
		}
		p.pos++
	}
	lit, err := unescape(p.in[start:p.pos], true)
	if err != nil {
		return "", &ParseError{Template: p.in, Offset: start, Reason: err.Error()}
	}
	return lit, nil
}

// check enforces the rules the grammar does not: "**" is last, and no field is
// bound twice.
func (p *parser) check() error {
	for i, s := range p.t.Segments {
		if s.Kind == DeepWildcard && i != len(p.t.Segments)-1 {
			return &ParseError{Template: p.in, Offset: 0, Reason: "'**' must be the last segment"}
		}
	}
	seen := map[string]bool{}
	for _, v := range p.t.Variables {
		f := v.Field()
		if seen[f] {
			return &ParseError{Template: p.in, Offset: 0, Reason: fmt.Sprintf("field %q is bound twice", f)}
		}
		seen[f] = true
	}
	return nil
}

// pchar reports RFC 3986 unreserved, sub-delims, ':' and '@' (less the characters
// the template grammar uses itself, which the caller checks first).
func pchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()+,;@", c) >= 0
}

var errBadEscape = errors.New("malformed percent-encoding")

// unescape decodes %XX sequences. With all false, "%2F" (and "%2f") stays as it is,
// which is how a multi-segment variable keeps an escaped slash apart from a
// separator (google.api.http "reserved expansion").
func unescape(s string, all bool) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", errBadEscape
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		if !all && v == '/' {
			b.WriteString(s[i : i+3])
		} else {
			b.WriteByte(v)
		}
		i += 2
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
