package config

import (
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// FileFields returns the paths a filter config names: the string value of every
// field whose name ends in "File" and the string items of every field whose name
// ends in "Files", at any depth. That naming rule is the filters' contract (see
// package filter): it is how the gateway knows which files make up a config's
// version, so that a changed key or secret file is reloaded like the config itself.
func (r Raw) FileFields() []string {
	if r.IsZero() {
		return nil
	}
	var out []string
	ast.Walk(fileFieldVisitor{out: &out}, r.node)
	return out
}

type fileFieldVisitor struct{ out *[]string }

func (v fileFieldVisitor) Visit(n ast.Node) ast.Visitor {
	kv, ok := n.(*ast.MappingValueNode)
	if !ok {
		return v
	}
	key := kv.Key.String()
	switch {
	case strings.HasSuffix(key, "File"):
		if s, ok := kv.Value.(*ast.StringNode); ok && s.Value != "" {
			*v.out = append(*v.out, s.Value)
		}
	case strings.HasSuffix(key, "Files"):
		if seq, ok := kv.Value.(*ast.SequenceNode); ok {
			for _, item := range seq.Values {
				if s, ok := item.(*ast.StringNode); ok && s.Value != "" {
					*v.out = append(*v.out, s.Value)
				}
			}
		}
	}
	return v
}
