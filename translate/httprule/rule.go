package httprule

import (
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
)

// FromRule turns a google.api.http rule of the gRPC method selector into its
// bindings: the rule's own pattern first, then its additional_bindings. Errors
// name the binding ("additional_bindings[1]") and what is wrong with it.
func FromRule(selector string, rule *annotations.HttpRule) ([]*Binding, error) {
	if rule == nil {
		return nil, fmt.Errorf("%s: no http rule", selector)
	}
	b, err := one(selector, rule, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", selector, err)
	}
	out := []*Binding{b}
	for i, extra := range rule.GetAdditionalBindings() {
		if len(extra.GetAdditionalBindings()) > 0 {
			return nil, fmt.Errorf("%s: additional_bindings[%d]: additional bindings cannot have additional bindings of their own", selector, i)
		}
		b, err := one(selector, extra, i+1)
		if err != nil {
			return nil, fmt.Errorf("%s: additional_bindings[%d]: %w", selector, i, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func one(selector string, rule *annotations.HttpRule, index int) (*Binding, error) {
	var method, path string
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		method, path = "GET", p.Get
	case *annotations.HttpRule_Put:
		method, path = "PUT", p.Put
	case *annotations.HttpRule_Post:
		method, path = "POST", p.Post
	case *annotations.HttpRule_Delete:
		method, path = "DELETE", p.Delete
	case *annotations.HttpRule_Patch:
		method, path = "PATCH", p.Patch
	case *annotations.HttpRule_Custom:
		method, path = p.Custom.GetKind(), p.Custom.GetPath()
		if method == "" || strings.ContainsAny(method, " \t/") {
			return nil, fmt.Errorf("custom.kind %q is not an HTTP method", method)
		}
	default:
		return nil, fmt.Errorf("no pattern (one of get, put, post, delete, patch, custom)")
	}
	t, err := Parse(path)
	if err != nil {
		return nil, err
	}
	body := rule.GetBody()
	if body != "" && body != "*" && !validFieldPath(body) {
		return nil, fmt.Errorf("body %q is neither \"*\" nor a field path", body)
	}
	if method == "GET" && body != "" {
		// RFC 9110 §9.3.1: a GET body has no defined meaning, and intermediaries
		// may drop it; a rule that maps one would lose data on the way.
		return nil, fmt.Errorf("GET cannot have a body (body %q)", body)
	}
	if rb := rule.GetResponseBody(); rb != "" && !validFieldPath(rb) {
		return nil, fmt.Errorf("response_body %q is not a field path", rb)
	}
	return &Binding{Selector: selector, Method: method, Template: t, Body: body, ResponseBody: rule.GetResponseBody(), Index: index}, nil
}

// validFieldPath reports IDENT { "." IDENT }.
func validFieldPath(s string) bool {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}
