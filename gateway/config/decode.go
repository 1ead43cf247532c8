package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

var errNegativeDuration = errors.New("duration must not be negative")

// Source says where a resource was read from, and where each of its fields is, so
// that an error found at any later stage can name file, line and field.
type Source struct {
	File string
	Line int
	// fields maps a field path ("spec.rules[0].match.path.regex") to its position.
	fields map[string]token.Position
}

// Pos returns the line and column of field, or of its nearest ancestor that has one.
func (s Source) Pos(field string) (line, col int) {
	for f := field; ; {
		if p, ok := s.fields[f]; ok {
			return p.Line, p.Column
		}
		i := strings.LastIndexAny(f, ".[")
		if i <= 0 {
			return s.Line, 0
		}
		f = f[:i]
	}
}

// Error is a config error with its place. Field is a dotted path inside the resource.
type Error struct {
	File     string
	Line     int
	Column   int
	Resource string // "Kind namespace/name", empty before the resource is known
	Field    string
	Msg      string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	} else {
		b.WriteString("<config>")
	}
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteString(":" + strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	if e.Resource != "" {
		b.WriteString(e.Resource + ": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Raw is a YAML value kept undecoded until its owner (a filter, say) knows its type.
// It remembers its place, so errors from Decode name the right line.
type Raw struct {
	node ast.Node
	src  *Source
	path string
}

// UnmarshalYAML keeps the node.
func (r *Raw) UnmarshalYAML(n ast.Node) error {
	r.node = n
	return nil
}

// MarshalYAML writes the kept value back.
func (r Raw) MarshalYAML() (any, error) {
	if r.node == nil {
		return nil, nil
	}
	var v any
	if err := yaml.NodeToValue(r.node, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// IsZero reports whether no value was given.
func (r Raw) IsZero() bool { return r.node == nil || r.node.Type() == ast.NullType }

// Decode decodes the value strictly into v (unknown fields are errors). An absent
// value leaves v unchanged.
func (r Raw) Decode(v any) error {
	if r.IsZero() {
		return nil
	}
	if err := nodeToValue(r.node, v); err != nil {
		e := yamlError(r.srcFile(), err)
		e.Field = r.path
		return e
	}
	return nil
}

func (r Raw) srcFile() string {
	if r.src == nil {
		return ""
	}
	return r.src.File
}

// Object is one decoded resource of a kind whose spec type is S.
type Object[S any] struct {
	Meta   Metadata
	Spec   S
	Source Source
}

// Ref is "Kind namespace/name", the way errors and logs name a resource.
func (o *Object[S]) Ref(kind string) string { return kind + " " + o.Meta.Namespace + "/" + o.Meta.Name }

// Set is every resource read from one or more files, grouped by kind, in file order.
type Set struct {
	Listeners             []*Object[ListenerSpec]
	Routes                []*Object[RouteSpec]
	Clusters              []*Object[ClusterSpec]
	Telemetry             []*Object[TelemetrySpec]
	ExternalServices      []*Object[ExternalServiceSpec]
	EgressPolicies        []*Object[EgressPolicySpec]
	AuthorizationPolicies []*Object[AuthorizationPolicySpec]
	Workloads             []*Object[WorkloadSpec]
}

// Len is the number of resources in the set.
func (s *Set) Len() int {
	return len(s.Listeners) + len(s.Routes) + len(s.Clusters) + len(s.Telemetry) +
		len(s.ExternalServices) + len(s.EgressPolicies) + len(s.AuthorizationPolicies) + len(s.Workloads)
}

type envelope struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       Raw      `yaml:"spec"`
}

// LoadFiles reads every named file (a directory contributes its *.yaml and *.yml files,
// sorted) into one Set, and validates it. It returns all errors found, joined.
func LoadFiles(paths ...string) (*Set, []byte, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range ents {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	set := &Set{}
	var all []byte
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, data...)
		all = append(all, '\n')
		if err := set.Add(f, data); err != nil {
			errs = append(errs, err) // go on: report every file's errors at once
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	if err := Validate(set); err != nil {
		return nil, nil, err
	}
	return set, all, nil
}

// Parse decodes one file's bytes into a new Set and validates it.
func Parse(file string, data []byte) (*Set, error) {
	set := &Set{}
	if err := set.Add(file, data); err != nil {
		return nil, err
	}
	if err := Validate(set); err != nil {
		return nil, err
	}
	return set, nil
}

// Add decodes every document of one file into the set, strictly. It does not check
// references between resources; Validate does.
func (s *Set) Add(file string, data []byte) error {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return yamlError(file, err)
	}
	var errs []error
	for _, doc := range f.Docs {
		if doc.Body == nil || doc.Body.Type() == ast.NullType {
			continue
		}
		if err := s.addDoc(file, doc.Body); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Set) addDoc(file string, body ast.Node) error {
	if err := checkTags(body); err != nil {
		return yamlError(file, err)
	}
	var env envelope
	if err := nodeToValue(body, &env); err != nil {
		return yamlError(file, err)
	}
	tok := body.GetToken()
	src := Source{File: file, fields: map[string]token.Position{}}
	if tok != nil {
		src.Line = tok.Position.Line
	}
	indexPositions(body, "", src.fields)
	ref := env.Kind + " " + env.Metadata.Namespace + "/" + env.Metadata.Name
	fail := func(field, msg string) error {
		l, c := src.Pos(field)
		return &Error{File: file, Line: l, Column: c, Resource: ref, Field: field, Msg: msg}
	}
	switch {
	case env.APIVersion == "":
		return fail("apiVersion", "required")
	case env.APIVersion != APIVersion:
		return fail("apiVersion", fmt.Sprintf("unsupported %q (this build reads %q)", env.APIVersion, APIVersion))
	case env.Kind == "":
		return fail("kind", "required")
	case env.Metadata.Name == "":
		return fail("metadata.name", "required")
	case !validName(env.Metadata.Name):
		return fail("metadata.name", fmt.Sprintf("%q is not a DNS label (lower-case letters, digits, '-', '.')", env.Metadata.Name))
	}
	if env.Metadata.Namespace == "" {
		env.Metadata.Namespace = "default"
		ref = env.Kind + " default/" + env.Metadata.Name
	} else if !validName(env.Metadata.Namespace) {
		return fail("metadata.namespace", fmt.Sprintf("%q is not a DNS label", env.Metadata.Namespace))
	}
	if env.Spec.IsZero() {
		return fail("spec", "required")
	}
	env.Spec.src = &src
	env.Spec.path = "spec"
	var err error
	switch env.Kind {
	case KindListener:
		s.Listeners, err = addObject(s.Listeners, env, src)
	case KindRoute:
		s.Routes, err = addObject(s.Routes, env, src)
	case KindCluster:
		s.Clusters, err = addObject(s.Clusters, env, src)
	case KindTelemetry:
		s.Telemetry, err = addObject(s.Telemetry, env, src)
	case KindExternalService:
		s.ExternalServices, err = addObject(s.ExternalServices, env, src)
	case KindEgressPolicy:
		s.EgressPolicies, err = addObject(s.EgressPolicies, env, src)
	case KindAuthorizationPolicy:
		s.AuthorizationPolicies, err = addObject(s.AuthorizationPolicies, env, src)
	case KindWorkload:
		s.Workloads, err = addObject(s.Workloads, env, src)
	default:
		return fail("kind", fmt.Sprintf("unknown kind %q", env.Kind))
	}
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.Resource = ref
			if f := src.fieldAt(ce.Line, ce.Column); f != "" && (ce.Field == "" || ce.Field == "spec") {
				ce.Field = f
			}
		}
		return err
	}
	return nil
}

// fieldAt names the field written at or just before line:col, to name the field
// of a decoding error that only knows its position.
func (s Source) fieldAt(line, col int) string {
	best, bl, bc := "", 0, 0
	for f, p := range s.fields {
		if p.Line > line || p.Line == line && p.Column > col {
			continue
		}
		if p.Line > bl || p.Line == bl && p.Column > bc || p.Line == bl && p.Column == bc && len(f) > len(best) {
			best, bl, bc = f, p.Line, p.Column
		}
	}
	return best
}

func addObject[S any](list []*Object[S], env envelope, src Source) ([]*Object[S], error) {
	o := &Object[S]{Meta: env.Metadata, Source: src}
	if err := env.Spec.Decode(&o.Spec); err != nil {
		return list, err
	}
	setRawSources(&o.Spec, &src)
	return append(list, o), nil
}

// yamlError turns a go-yaml error into an *Error carrying its position.
func yamlError(file string, err error) *Error {
	var ce *Error
	if errors.As(err, &ce) {
		if ce.File == "" {
			ce.File = file
		}
		return ce
	}
	var ye yaml.Error
	if errors.As(err, &ye) {
		e := &Error{File: file, Msg: ye.GetMessage()}
		if t := ye.GetToken(); t != nil && t.Position != nil {
			e.Line, e.Column = t.Position.Line, t.Position.Column
		}
		return e
	}
	return &Error{File: file, Msg: err.Error()}
}

// indexPositions records the position of every mapping value and sequence item under
// n, keyed by its field path.
func indexPositions(n ast.Node, path string, out map[string]token.Position) {
	switch n := n.(type) {
	case *ast.MappingNode:
		for _, v := range n.Values {
			indexPositions(v, path, out)
		}
	case *ast.MappingValueNode:
		key := n.Key.String()
		p := key
		if path != "" {
			p = path + "." + key
		}
		if t := n.Key.GetToken(); t != nil && t.Position != nil {
			out[p] = *t.Position
		}
		indexPositions(n.Value, p, out)
	case *ast.SequenceNode:
		for i, v := range n.Values {
			p := path + "[" + strconv.Itoa(i) + "]"
			if t := v.GetToken(); t != nil && t.Position != nil {
				out[p] = *t.Position
			}
			indexPositions(v, p, out)
		}
	case *ast.TagNode:
		indexPositions(n.Value, path, out)
	case *ast.AnchorNode:
		indexPositions(n.Value, path, out)
	}
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '.') && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// setRawSources tells every Raw inside a spec where it sits, for its error messages.
func setRawSources(spec any, src *Source) {
	r, ok := spec.(*RouteSpec)
	if !ok {
		return
	}
	for i := range r.Rules {
		for j := range r.Rules[i].Filters {
			c := &r.Rules[i].Filters[j].Config
			c.src = src
			c.path = fmt.Sprintf("spec.rules[%d].filters[%d].config", i, j)
		}
	}
}

// nodeError is an error positioned at n, for custom unmarshalers.
func nodeError(n ast.Node, msg string) error {
	e := &Error{Msg: msg}
	if t := n.GetToken(); t != nil && t.Position != nil {
		e.Line, e.Column = t.Position.Line, t.Position.Column
	}
	return e
}

// Document is one resource in its file form, for writing a set back out.
type Document struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       any      `yaml:"spec"`
}

// Documents returns every resource of the set in file form, kind by kind.
func (s *Set) Documents() []Document {
	var out []Document
	add := func(kind string, meta Metadata, spec any) {
		out = append(out, Document{APIVersion: APIVersion, Kind: kind, Metadata: meta, Spec: spec})
	}
	for _, o := range s.Listeners {
		add(KindListener, o.Meta, o.Spec)
	}
	for _, o := range s.Routes {
		add(KindRoute, o.Meta, o.Spec)
	}
	for _, o := range s.Clusters {
		add(KindCluster, o.Meta, o.Spec)
	}
	for _, o := range s.Telemetry {
		add(KindTelemetry, o.Meta, o.Spec)
	}
	for _, o := range s.ExternalServices {
		add(KindExternalService, o.Meta, o.Spec)
	}
	for _, o := range s.EgressPolicies {
		add(KindEgressPolicy, o.Meta, o.Spec)
	}
	for _, o := range s.AuthorizationPolicies {
		add(KindAuthorizationPolicy, o.Meta, o.Spec)
	}
	for _, o := range s.Workloads {
		add(KindWorkload, o.Meta, o.Spec)
	}
	return out
}

// nodeToValue decodes strictly and turns a panic inside the YAML library (seen
// with fuzzed input) into an error: a malformed config must never take the proxy
// down.
func nodeToValue(n ast.Node, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = nodeError(n, fmt.Sprintf("malformed YAML (%v)", p))
		}
	}()
	if err := yaml.NodeToValue(n, v, yaml.Strict()); err != nil {
		return err
	}
	return lossless(n, v)
}

// lossless refuses a fraction written where the decoded field holds a whole number
// ("burst: 1.5" into an int): the YAML library truncates such values silently. It
// writes v back and compares every fractional number of the source with what came
// back at the same place.
func lossless(n ast.Node, v any) error {
	var bad *ast.FloatNode
	ast.Walk(floatVisitor{&bad}, n)
	if bad == nil {
		return nil // no fractions at all: nothing can have been truncated
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil
	}
	var back any
	if yaml.Unmarshal(b, &back) != nil {
		return nil
	}
	return compareFloats(n, back)
}

type floatVisitor struct{ found **ast.FloatNode }

func (f floatVisitor) Visit(n ast.Node) ast.Visitor {
	if fl, ok := n.(*ast.FloatNode); ok && fl.Value != float64(int64(fl.Value)) {
		*f.found = fl
		return nil
	}
	return f
}

func compareFloats(n ast.Node, back any) error {
	switch n := n.(type) {
	case *ast.MappingNode:
		for _, mv := range n.Values {
			if err := compareFloats(mv, back); err != nil {
				return err
			}
		}
	case *ast.MappingValueNode:
		m, _ := back.(map[string]any)
		return compareFloats(n.Value, m[n.Key.String()])
	case *ast.SequenceNode:
		l, _ := back.([]any)
		for i, e := range n.Values {
			var b any
			if i < len(l) {
				b = l[i]
			}
			if err := compareFloats(e, b); err != nil {
				return err
			}
		}
	case *ast.TagNode:
		return compareFloats(n.Value, back)
	case *ast.AnchorNode:
		return compareFloats(n.Value, back)
	case *ast.FloatNode:
		if n.Value == float64(int64(n.Value)) {
			return nil
		}
		if f, ok := back.(float64); ok && f == n.Value {
			return nil
		}
		return nodeError(n, fmt.Sprintf("%v is not a whole number", n.Value))
	}
	return nil
}

// checkTags refuses explicit YAML tags other than the standard ones: they carry no
// meaning in this format, and odd ones have crashed the decoder.
func checkTags(n ast.Node) error {
	var bad ast.Node
	ast.Walk(tagVisitor{&bad}, n)
	if bad != nil {
		return nodeError(bad, fmt.Sprintf("YAML tag %s is not supported", bad.GetToken().Value))
	}
	return nil
}

type tagVisitor struct{ bad *ast.Node }

func (v tagVisitor) Visit(n ast.Node) ast.Visitor {
	if *v.bad != nil {
		return nil
	}
	if t, ok := n.(*ast.TagNode); ok {
		switch t.Start.Value {
		case "!!str", "!!int", "!!float", "!!bool", "!!null", "!!map", "!!seq":
		default:
			*v.bad = n
			return nil
		}
	}
	return v
}

// ReferencedFiles lists every file the set names (certificates, keys, CA bundles,
// secrets), so that a reload can notice when one of them changed on disk even
// though the config itself did not.
func (s *Set) ReferencedFiles() []string {
	var out []string
	add := func(paths ...string) {
		for _, p := range paths {
			if p != "" {
				out = append(out, p)
			}
		}
	}
	for _, o := range s.Listeners {
		if t := o.Spec.TLS; t != nil {
			for _, c := range t.Certificates {
				add(c.CertFile, c.KeyFile)
			}
			add(t.ClientCAFile)
			if t.ACME != nil {
				add(t.ACME.CARootFile)
			}
		}
		if e := o.Spec.Egress; e != nil {
			for _, f := range e.Filters {
				add(f.Config.FileFields()...) // credexchange's secrets
			}
		}
	}
	for _, o := range s.Clusters {
		if t := o.Spec.TLS; t != nil {
			add(t.CAFile, t.CertFile, t.KeyFile)
		}
		if sc := o.Spec.LoadBalancer.StickyCookie; sc != nil {
			add(sc.SecretFile)
		}
	}
	for _, o := range s.ExternalServices {
		add(o.Spec.CAFile)
	}
	for _, o := range s.Routes {
		for _, rule := range o.Spec.Rules {
			for _, f := range rule.Filters {
				add(f.Config.FileFields()...)
			}
		}
	}
	return out
}
