package descriptors_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/translate/descriptors"
)

const libraryService = "portcullis.translate.test.library.v1.Library"

// TestSourcesAgree loads the test library from its .proto (compiled here, with
// google/api imports from the binary) and from the committed descriptor set, and
// checks both expose the same methods with the same HTTP rules.
func TestSourcesAgree(t *testing.T) {
	fromProto, err := descriptors.CompileProtoFiles(context.Background(), []string{"library.proto"}, []string{"../internal/testpb"})
	if err != nil {
		t.Fatal(err)
	}
	fromSet, err := descriptors.LoadDescriptorSet("../internal/testpb/testdata/library.binpb")
	if err != nil {
		t.Fatal(err)
	}
	a, err := fromProto.Service(libraryService)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fromSet.Service(libraryService)
	if err != nil {
		t.Fatal(err)
	}
	if a.Methods().Len() != 9 || a.Methods().Len() != b.Methods().Len() {
		t.Fatalf("methods: %d from proto, %d from set", a.Methods().Len(), b.Methods().Len())
	}
	for i := 0; i < a.Methods().Len(); i++ {
		ra, rb := descriptors.HTTPRule(a.Methods().Get(i)), descriptors.HTTPRule(b.Methods().Get(i))
		if ra == nil || rb == nil || ra.String() != rb.String() {
			t.Errorf("%s: rule %v from proto, %v from set", a.Methods().Get(i).Name(), ra, rb)
		}
	}
	if _, err := fromSet.Service("nope.Svc"); err == nil || !strings.Contains(err.Error(), libraryService) {
		t.Errorf("unknown service: %v, want the known ones listed", err)
	}
}

func TestCompileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.proto", "syntax = \"proto3\";\nimport \"missing.proto\";\n")
	write("b.proto", "syntax = \"proto3\";\nmessage M { strin x = 1; }\n")
	for file, want := range map[string]string{"a.proto": "missing.proto", "b.proto": "strin"} {
		_, err := descriptors.CompileProtoFiles(context.Background(), []string{file}, []string{dir})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %q", file, err, want)
		}
	}
	if _, err := descriptors.LoadDescriptorSet(filepath.Join(dir, "a.proto")); err == nil {
		t.Error("a .proto text loaded as a descriptor set")
	}
}

func TestParseRules(t *testing.T) {
	rules, err := descriptors.ParseRules([]byte(`type: google.api.Service
config_version: 3
http:
  rules:
    - selector: a.B.C
      post: /v1/c
      body: "*"
      response_body: x
      additional_bindings:
        - get: /v1/c/{id}
    - selector: a.B.D
      get: /v1/d
      responseBody: y
`))
	if err != nil {
		t.Fatal(err)
	}
	if r := rules["a.B.C"]; r.GetPost() != "/v1/c" || r.GetBody() != "*" || len(r.GetAdditionalBindings()) != 1 || r.GetResponseBody() != "x" {
		t.Errorf("a.B.C = %v", r)
	}
	if rules["a.B.D"].GetResponseBody() != "y" {
		t.Errorf("lowerCamelCase key not read: %v", rules["a.B.D"])
	}
	bad := map[string]string{
		"documentation: {}\nhttp: {rules: []}\n":                                    `unknown key "documentation"`,
		"type: other\nhttp: {rules: []}\n":                                          "is not google.api.Service",
		"config_version: 3\n":                                                       "http: missing",
		"http: {rules: [{get: /x}]}\n":                                              "rules[0].selector: required",
		"http: {rules: [{selector: a.B.*, get: /x}]}\n":                             "wildcards",
		"http: {rules: [{selector: a.B.C, get: /x}, {selector: a.B.C, get: /y}]}\n": "has a rule already",
		"http: {rules: [{selector: a.B.C, gett: /x}]}\n":                            "gett",
		"http: [\n": "not YAML",
	}
	for in, want := range bad {
		if _, err := descriptors.ParseRules([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRules(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}
