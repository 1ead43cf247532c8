package gateway

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/filter"
	_ "github.com/portcullis/portcullis/gateway/filters/all"
)

// TestEdgeDocExamples parses and validates every complete example of docs/edge.md
// and builds each of its filters with the real factories. The examples name key
// and secret files that do not exist here, so a filter may fail on a missing file,
// and only on that: any other problem (a misspelt field, a value out of range)
// fails the test.
func TestEdgeDocExamples(t *testing.T) {
	const path = "../docs/edge.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	examples := completeExamples(doc)
	if len(examples) < 3 {
		t.Fatalf("docs/edge.md has %d complete examples, want the three worked examples", len(examples))
	}
	for i, ex := range examples {
		set, err := config.Parse("docs/edge.md", []byte(strings.Repeat("\n", ex.line)+ex.body))
		if err != nil {
			t.Errorf("example %d (line %d): %v", i+1, ex.line, err)
			continue
		}
		for _, r := range set.Routes {
			for ri, rule := range r.Spec.Rules {
				for _, fs := range rule.Filters {
					factory, ok := filter.Lookup(fs.Type)
					if !ok {
						t.Errorf("example %d: filter type %q is not registered", i+1, fs.Type)
						continue
					}
					f, err := factory(filter.Build{Config: fs.Config, Route: r.Meta.Name, DataDir: t.TempDir()})
					if err != nil {
						if !strings.Contains(err.Error(), "no such file") {
							t.Errorf("example %d, route %s rule %d, filter %s: %v", i+1, r.Meta.Name, ri, fs.Type, err)
						}
						continue
					}
					if c, ok := f.(interface{ Close() error }); ok {
						c.Close()
					}
				}
			}
		}
	}
}

type docExample struct {
	line int // line of the opening fence
	body string
}

// completeExamples returns the ```yaml blocks whose first line is the marker.
func completeExamples(doc []byte) []docExample {
	var out []docExample
	sc := bufio.NewScanner(bytes.NewReader(doc))
	n, in, start := 0, false, 0
	var body strings.Builder
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case !in && strings.TrimSpace(line) == "```yaml":
			in, start = true, n
			body.Reset()
		case in && strings.TrimSpace(line) == "```":
			in = false
			if strings.HasPrefix(body.String(), "# example: complete\n") {
				out = append(out, docExample{line: start, body: body.String()})
			}
		case in:
			body.WriteString(line + "\n")
		}
	}
	return out
}
