package descriptors

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/encoding/protojson"
)

// ServiceConfigType is the only "type" a rule file may declare.
const ServiceConfigType = "google.api.Service"

// ruleFileKeys are the top-level keys of a rule file. It is the http part of a
// Google API service config; its other sections (documentation, quota, ...) mean
// nothing here, and are refused rather than silently ignored.
var ruleFileKeys = []string{"type", "config_version", "name", "http"}

// maxRuleFileBytes bounds a rule file.
const maxRuleFileBytes = 4 << 20

// LoadRuleFile reads HTTP rules for protos without google.api.http annotations,
// in the format of a Google API service config:
//
//	type: google.api.Service
//	config_version: 3
//	http:
//	  rules:
//	    - selector: library.v1.Library.GetBook
//	      get: /v1/{name=shelves/*/books/*}
//
// The rules are keyed by selector (a method's full name); a selector given twice
// is an error. Field names may be written in snake_case or lowerCamelCase.
func LoadRuleFile(path string) (map[string]*annotations.HttpRule, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxRuleFileBytes {
		return nil, fmt.Errorf("%s: %d bytes is more than the %d allowed for a rule file", path, st.Size(), maxRuleFileBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rules, err := ParseRules(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rules, nil
}

// ParseRules parses the contents of a rule file (see LoadRuleFile).
func ParseRules(data []byte) (map[string]*annotations.HttpRule, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	for k := range doc {
		if !slices.Contains(ruleFileKeys, k) {
			return nil, fmt.Errorf("unknown key %q (a rule file has: %s)", k, strings.Join(ruleFileKeys, ", "))
		}
	}
	if t, ok := doc["type"]; ok && t != ServiceConfigType {
		return nil, fmt.Errorf("type: %v is not %s", t, ServiceConfigType)
	}
	httpPart, ok := doc["http"]
	if !ok {
		return nil, fmt.Errorf("http: missing (the rules go under http.rules)")
	}
	// YAML to JSON, then protojson: it knows google.api.Http's fields and both
	// spellings of their names, and refuses unknown ones.
	js, err := json.Marshal(httpPart)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	var h annotations.Http
	if err := protojson.Unmarshal(js, &h); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	out := make(map[string]*annotations.HttpRule, len(h.GetRules()))
	for i, r := range h.GetRules() {
		sel := r.GetSelector()
		switch {
		case sel == "":
			return nil, fmt.Errorf("http.rules[%d].selector: required", i)
		case strings.Contains(sel, "*"):
			return nil, fmt.Errorf("http.rules[%d].selector: %q: wildcards are not supported; name one method", i, sel)
		case out[sel] != nil:
			return nil, fmt.Errorf("http.rules[%d].selector: %q has a rule already", i, sel)
		}
		out[sel] = r
	}
	return out, nil
}
