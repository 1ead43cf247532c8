package config_test

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
)

// The configuration reference promises that its examples work. Every ```yaml
// block of docs/configuration.md whose first line is exampleMarker is parsed and
// validated here, as are the files in deploy/examples, so a change to the file
// format that breaks a documented example fails this test instead of a reader.
// Blocks without the marker are partial snippets and are not parsed.
//
// config.Parse decodes strictly and validates (references included). It does not
// compile regular expressions or path templates, build filters, or open files
// (certificates, CA bundles, secrets): the gateway does that when it loads a
// config, so the paths in the examples need not exist.

const (
	// docPath is how errors name the reference: relative to the repository root,
	// where a reader looks for it. root is that root, seen from this package.
	docPath       = "docs/configuration.md"
	root          = "../.."
	examplesGlob  = "deploy/examples/*.y*ml"
	exampleMarker = "# example: complete"
)

// docBlock is one fenced yaml block of the reference.
type docBlock struct {
	fence int    // 1-based line of the opening ```yaml
	first string // the first line inside the block, trimmed
	body  string // the lines inside the fence, indentation of the fence removed
}

// yamlBlocks returns every ```yaml block of a Markdown document, in order. It
// fails on a block that is never closed, which would otherwise swallow the rest
// of the document silently.
func yamlBlocks(t *testing.T, doc []byte) []docBlock {
	t.Helper()
	var (
		blocks  []docBlock
		cur     *docBlock
		indent  string
		body    strings.Builder
		inFence bool // inside a fence of another language
	)
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur != nil && strings.HasPrefix(trimmed, "```") && strings.Trim(trimmed, "`") == "":
			cur.body = body.String()
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			l := strings.TrimPrefix(line, indent)
			if body.Len() == 0 {
				cur.first = strings.TrimSpace(l)
			}
			body.WriteString(l)
			body.WriteByte('\n')
		case inFence:
			if strings.HasPrefix(trimmed, "```") && strings.Trim(trimmed, "`") == "" {
				inFence = false
			}
		case strings.HasPrefix(trimmed, "```"):
			lang := strings.TrimSpace(strings.TrimLeft(trimmed, "`"))
			if lang != "yaml" {
				inFence = true
				continue
			}
			indent = line[:len(line)-len(strings.TrimLeft(line, " \t"))]
			cur = &docBlock{fence: n}
			body.Reset()
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading %s: %v", docPath, err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: ```yaml block is never closed", docPath, cur.fence)
	}
	if inFence {
		t.Fatalf("%s: a fenced block is never closed", docPath)
	}
	return blocks
}

func TestDocExamplesParse(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(root, docPath))
	if err != nil {
		t.Fatalf("the configuration reference must exist: %v", err)
	}
	kinds := map[string]bool{
		config.KindListener: false, config.KindRoute: false, config.KindCluster: false,
		config.KindTelemetry: false, config.KindExternalService: false, config.KindEgressPolicy: false,
		config.KindAuthorizationPolicy: false, config.KindWorkload: false,
	}
	complete := 0
	for _, b := range yamlBlocks(t, doc) {
		if b.first != exampleMarker {
			// A near miss ("# example: compete", "#example: complete") would make a
			// broken example silently untested.
			if strings.HasPrefix(strings.ReplaceAll(b.first, " ", ""), "#example") {
				t.Errorf("%s:%d: marker %q is not %q", docPath, b.fence+1, b.first, exampleMarker)
			}
			continue
		}
		complete++
		t.Run(fmt.Sprintf("line%d", b.fence), func(t *testing.T) {
			// Pad with the lines before the block, so that the line numbers in
			// config errors are lines of the document.
			data := strings.Repeat("\n", b.fence) + b.body
			set, err := config.Parse(docPath, []byte(data))
			if err != nil {
				t.Fatalf("the example at %s:%d does not parse and validate:\n%v", docPath, b.fence, err)
			}
			if set.Len() == 0 {
				t.Fatalf("the example at %s:%d holds no resource", docPath, b.fence)
			}
			for _, d := range set.Documents() {
				kinds[d.Kind] = true
			}
		})
	}
	if complete == 0 {
		t.Fatalf("%s has no block starting with %q: nothing was checked", docPath, exampleMarker)
	}
	for k, seen := range kinds {
		if !seen {
			t.Errorf("%s has no complete example of kind %s", docPath, k)
		}
	}
}

func TestDeployExamplesParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, examplesGlob))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no files match %s", examplesGlob)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			name, _ := filepath.Rel(root, f)
			if _, err := config.Parse(name, data); err != nil {
				t.Fatalf("%s does not parse and validate:\n%v", name, err)
			}
		})
	}
}

// TestDemoConfigParses checks the config the ingress writes for its demo (run
// without -config), the first one most people see. It is a format string in
// internal/demo/demo.go; its verbs are filled with placeholder paths and addresses.
func TestDemoConfigParses(t *testing.T) {
	const file, name = "internal/demo/demo.go", "demoConfig"
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(root, file), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var lit *ast.BasicLit
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok {
			for i, id := range vs.Names {
				if id.Name == name && i < len(vs.Values) {
					lit, _ = vs.Values[i].(*ast.BasicLit)
				}
			}
		}
		return lit == nil
	})
	if lit == nil || lit.Kind != token.STRING {
		t.Fatalf("%s: no string constant %s; update this test if the demo moved", file, name)
	}
	format, err := strconv.Unquote(lit.Value)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	cfg := regexp.MustCompile(`%[qs]`).ReplaceAllStringFunc(format, func(verb string) string {
		n++
		if verb == "%q" {
			return strconv.Quote(fmt.Sprintf("/demo/file%d.pem", n))
		}
		return fmt.Sprintf("127.0.0.1:%d", 9000+n)
	})
	// Lines of the constant start at the literal's line in demo.go.
	line := fset.Position(lit.Pos()).Line
	if _, err := config.Parse(file, []byte(strings.Repeat("\n", line-1)+cfg)); err != nil {
		t.Fatalf("the demo config (%s, const %s) does not parse and validate:\n%v", file, name, err)
	}
}

// TestYAMLBlocks checks the extraction itself, so that a bug in it cannot make
// TestDocExamplesParse pass by finding nothing or the wrong lines.
func TestYAMLBlocks(t *testing.T) {
	md := strings.Join([]string{
		"# Title",                     // 1
		"```yaml",                     // 2
		"# example: complete",         // 3
		"kind: Listener",              // 4
		"```",                         // 5
		"```go",                       // 6
		"```yaml is not a fence here", // 7: inside a go block
		"```",                         // 8
		"- item",                      // 9
		"  ```yaml",                   // 10
		"  spec: {}",                  // 11
		"  ```",                       // 12
	}, "\n")
	got := yamlBlocks(t, []byte(md))
	if len(got) != 2 {
		t.Fatalf("got %d blocks, want 2: %+v", len(got), got)
	}
	if got[0].fence != 2 || got[0].first != exampleMarker || got[0].body != "# example: complete\nkind: Listener\n" {
		t.Errorf("block 0 = %+v", got[0])
	}
	if got[1].fence != 10 || got[1].first != "spec: {}" || got[1].body != "spec: {}\n" {
		t.Errorf("block 1 = %+v", got[1])
	}
}
