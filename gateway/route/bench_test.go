package route_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/route"
)

// benchRules builds n rules for one host: a mix of exact, prefix and template
// paths, some with method, header or query matchers, a regex every 1000 rules,
// and (from 100 rules up) three regexes with no literal prefix at the end of the
// table. The index cannot place those, so they are tried on every miss; placed
// earlier they would be tried before every later rule (about 300 ns each on the
// reference machine), which is the price of an unanchored regex, not of the index.
//
// last[k] is the s-number of the last rule of kind k (i%10), or -1.
func benchRules(n int) (rules []route.Rule[int], last [10]int) {
	for k := range last {
		last[k] = -1
	}
	host := []string{"api.example.com"}
	rules = make([]route.Rule[int], 0, n)
	for i := 0; len(rules) < n; i++ {
		if n >= 100 && len(rules) == n-3 {
			for _, re := range []string{`(?i)/legacy/.*`, `.*\.php`, `/[a-z]+/internal/.*`} {
				rules = append(rules, route.Rule[int]{Hosts: host, Match: config.Match{Path: &config.PathMatch{Regex: re}}, Value: len(rules)})
			}
			continue
		}
		var m config.Match
		s := fmt.Sprintf("s%d", i)
		switch i % 10 {
		case 0:
			m.Path = &config.PathMatch{Exact: "/" + s + "/status"}
		case 1:
			m.Path = &config.PathMatch{Prefix: "/" + s + "/api"}
		case 2:
			m.Path = &config.PathMatch{Template: "/v1/" + s + "/users/{id}"}
		case 3:
			m.Path = &config.PathMatch{Exact: "/" + s + "/orders"}
			m.Methods = []string{"GET", "POST"}
		case 4:
			m.Path = &config.PathMatch{Prefix: "/" + s + "/admin"}
			m.Headers = []config.ValueMatch{{Name: "X-Role", Exact: "admin"}}
		case 5:
			m.Path = &config.PathMatch{Template: "/v1/" + s + "/{name=shelves/*}/books/{book}:get"}
		case 6:
			m.Path = &config.PathMatch{Prefix: "/static/" + s + "/"}
		case 7:
			m.Path = &config.PathMatch{Exact: "/" + s + "/items"}
			m.Headers = []config.ValueMatch{{Name: "X-Canary", Present: true}}
		case 8:
			m.Path = &config.PathMatch{Template: "/v2/" + s + "/{rest=**}"}
		case 9:
			m.Path = &config.PathMatch{Prefix: "/" + s}
			m.Query = []config.ValueMatch{{Name: "debug", Present: true}}
		}
		if i%1000 == 999 {
			m = config.Match{Path: &config.PathMatch{Regex: "/re" + s + "/[0-9]+"}}
		} else {
			last[i%10] = i
		}
		rules = append(rules, route.Rule[int]{Hosts: host, Match: m, Value: len(rules)})
	}
	return rules, last
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		rules, last := benchRules(n)
		tab, err := route.Compile(rules)
		if err != nil {
			b.Fatal(err)
		}
		type probe struct {
			name, path string
			header     [2]string
			params     bool
		}
		var probes []probe
		if i := last[0]; i >= 0 {
			probes = append(probes, probe{name: "exact", path: fmt.Sprintf("/s%d/status", i)})
		}
		if i := last[1]; i >= 0 {
			probes = append(probes, probe{name: "prefix", path: fmt.Sprintf("/s%d/api/v3/things", i)})
		}
		if i := last[4]; i >= 0 {
			probes = append(probes, probe{name: "prefix+header", path: fmt.Sprintf("/s%d/admin/users", i), header: [2]string{"X-Role", "admin"}})
		}
		if i := last[5]; i >= 0 {
			probes = append(probes, probe{name: "template", path: fmt.Sprintf("/v1/s%d/shelves/7/books/9:get", i), params: true})
		}
		probes = append(probes, probe{name: "miss", path: "/nothing/here/at/all"})
		for _, p := range probes {
			b.Run(fmt.Sprintf("routes=%d/%s", n, p.name), func(b *testing.B) {
				rq, _ := http.NewRequest("GET", "http://api.example.com"+p.path+"?page=2&sort=asc", nil)
				rq.Header.Set("User-Agent", "bench")
				rq.Header.Set("Accept", "application/json")
				if p.header[0] != "" {
					rq.Header.Set(p.header[0], p.header[1])
				}
				_, ps, ok := tab.Match("api.example.com", p.path, rq)
				if ok != (p.name != "miss") || (len(ps) > 0) != p.params {
					b.Fatalf("%s: ok=%v params=%v", p.path, ok, ps)
				}
				b.ReportAllocs()
				for b.Loop() {
					tab.Match("api.example.com", p.path, rq)
				}
			})
		}
	}
}

func BenchmarkParseTemplate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := route.ParseTemplate("/v1/{name=shelves/*/books/*}/pages/{page}:publish"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	rules, _ := benchRules(10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := route.Compile(rules); err != nil {
			b.Fatal(err)
		}
	}
}
