package route_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/route"
)

// FuzzParseTemplate: parsing never panics; a parsed template matches any path
// without panicking; the captured values are pieces of the path, one per
// variable; the canonical form parses back to the same canonical form and
// matches the same way.
func FuzzParseTemplate(f *testing.F) {
	// More seeds live in testdata/fuzz/FuzzParseTemplate.
	f.Add("/v1/{name=shelves/*}/books/{book}:get", "/v1/shelves/s/books/b:get")
	f.Add("/files/{p=**}", "/files/a/b/")
	f.Fuzz(func(t *testing.T, tmpl, path string) {
		tp, err := route.ParseTemplate(tmpl)
		if err != nil {
			if _, ok := err.(*route.TemplateError); !ok {
				t.Fatalf("error %v is a %T, not a *TemplateError", err, err)
			}
			return
		}
		ps, ok := tp.Match(path)
		vars := tp.Vars()
		if ok {
			if len(ps) != len(vars) {
				t.Fatalf("%q on %q: %d params for %d variables", tmpl, path, len(ps), len(vars))
			}
			for i, p := range ps {
				if p.Name != vars[i] || !strings.Contains(path, p.Value) {
					t.Fatalf("%q on %q: param %v is not variable %q or not in the path", tmpl, path, p, vars[i])
				}
			}
		} else if ps != nil {
			t.Fatalf("%q on %q: no match but params %v", tmpl, path, ps)
		}
		canon := tp.String()
		tp2, err := route.ParseTemplate(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, tmpl, err)
		}
		if again := tp2.String(); again != canon {
			t.Fatalf("canonical form is not stable: %q -> %q -> %q", tmpl, canon, again)
		}
		ps2, ok2 := tp2.Match(path)
		if ok2 != ok || !equalParams(ps, ps2) {
			t.Fatalf("%q and its canonical form %q differ on %q: %v %v vs %v %v", tmpl, canon, path, ps, ok, ps2, ok2)
		}
	})
}
