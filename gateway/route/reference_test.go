package route_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/route"
)

// TestAgainstReference checks the indexed table against a plain linear reading of
// the documented semantics, on random tables built from a small alphabet so that
// paths, prefixes, templates and regexes overlap often. A bug in the index (a rule
// filed where a matching path does not walk, candidates tried out of order) shows
// up as a difference.
func TestAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	reqHosts := []string{"a.com", "z.a.com", "x.b.a.com", "y.b.a.com", "q.com", "b.a.com"}
	for table := 0; table < 300; table++ {
		n := 1 + rng.IntN(40)
		rules := make([]route.Rule[string], n)
		for i := range rules {
			rules[i] = randomRule(rng, i)
		}
		tab, err := route.Compile(rules)
		if err != nil {
			t.Fatalf("table %d: %v", table, err)
		}
		for probe := 0; probe < 200; probe++ {
			host := reqHosts[rng.IntN(len(reqHosts))]
			path := randomPath(rng)
			rq, _ := http.NewRequest([]string{"GET", "POST"}[rng.IntN(2)], "http://h/", nil)
			if rng.IntN(2) == 0 {
				rq.Header.Set("X-A", []string{"1", "2"}[rng.IntN(2)])
			}
			got, gotPs, gotOK := tab.Match(host, path, rq)
			want, wantPs, wantOK := reference(rules, host, path, rq)
			if got != want || gotOK != wantOK || !equalParams(gotPs, wantPs) {
				var b strings.Builder
				for i, r := range rules {
					fmt.Fprintf(&b, "\n  %d %v %s", i, r.Hosts, describe(r.Match))
				}
				t.Fatalf("table %d: %s %s %v: got %q %v %v, want %q %v %v; rules:%s",
					table, rq.Method, host, path, got, gotPs, gotOK, want, wantPs, wantOK, b.String())
			}
		}
	}
}

var segs = []string{"a", "b", "api", "v1", "x", ""}

func randomPath(rng *rand.Rand) string {
	if rng.IntN(30) == 0 {
		return "*"
	}
	n := 1 + rng.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = segs[rng.IntN(len(segs))]
	}
	p := "/" + strings.Join(parts, "/")
	if rng.IntN(8) == 0 {
		p += ":go"
	}
	return p
}

// rulePath is a random path for an exact or prefix rule: no "*", no verb.
func rulePath(rng *rand.Rand) string {
	for {
		if p := randomPath(rng); p != "*" {
			return strings.TrimSuffix(p, ":go")
		}
	}
}

func nonEmpty(rng *rand.Rand) string { return segs[rng.IntN(len(segs)-1)] }

func randomRule(rng *rand.Rand, i int) route.Rule[string] {
	hostSets := [][]string{nil, nil, {"a.com"}, {"*.a.com"}, {"*.b.a.com"}, {"x.b.a.com", "A.com"}}
	var m config.Match
	s1, s2 := nonEmpty(rng), nonEmpty(rng)
	switch rng.IntN(5) {
	case 0:
		m.Path = &config.PathMatch{Exact: rulePath(rng)}
	case 1:
		p := rulePath(rng)
		if rng.IntN(3) == 0 {
			p = "/"
		}
		m.Path = &config.PathMatch{Prefix: p}
	case 2:
		res := []string{"/" + s1 + "/[a-z]+", "/" + s1 + "/" + s2 + ".*", "(?i)/" + s1, ".*" + s1, "/" + s1 + "|/" + s2, "(/" + s1 + ")/" + s2, "/" + s1 + "/?"}
		m.Path = &config.PathMatch{Regex: res[rng.IntN(len(res))]}
	case 3:
		ts := []string{"/" + s1 + "/{x}", "/{x}/" + s1, "/" + s1 + "/**", "/" + s1 + ":go", "/" + s1 + "/{p=**}", "/" + s1 + "/{p=" + s2 + "/*}", "/" + s1 + "/" + s2 + "/{y}:go"}
		m.Path = &config.PathMatch{Template: ts[rng.IntN(len(ts))]}
	}
	if rng.IntN(4) == 0 {
		m.Methods = []string{"POST"}
	}
	switch rng.IntN(6) {
	case 0:
		m.Headers = []config.ValueMatch{{Name: "x-a", Exact: "1"}}
	case 1:
		m.Headers = []config.ValueMatch{{Name: "X-A", Absent: true}}
	}
	return route.Rule[string]{Hosts: hostSets[rng.IntN(len(hostSets))], Match: m, Value: fmt.Sprint(i)}
}

func describe(m config.Match) string {
	s := "any"
	if p := m.Path; p != nil {
		s = "exact " + p.Exact + "prefix " + p.Prefix + "regex " + p.Regex + "template " + p.Template
	}
	return fmt.Sprintf("%s methods=%v headers=%v", s, m.Methods, m.Headers)
}

// reference is the semantics written out as plainly as possible.
func reference(rules []route.Rule[string], host, path string, r *http.Request) (string, route.Params, bool) {
	covers := func(pattern string) bool {
		pattern = strings.ToLower(pattern)
		if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
			return strings.HasSuffix(host, suffix) && len(host) > len(suffix) && host[0] != '.'
		}
		return pattern == host
	}
	// The most specific pattern that covers host: exact, else longest wildcard.
	best := ""
	for _, r := range rules {
		for _, h := range r.Hosts {
			h = strings.ToLower(h)
			if !covers(h) {
				continue
			}
			exactH := !strings.HasPrefix(h, "*")
			bestExact := best != "" && !strings.HasPrefix(best, "*")
			if best == "" || exactH && !bestExact || exactH == bestExact && len(h) > len(best) {
				best = h
			}
		}
	}
	for _, ru := range rules {
		inBucket := len(ru.Hosts) == 0 && best == ""
		for _, h := range ru.Hosts {
			inBucket = inBucket || strings.ToLower(h) == best
		}
		if !inBucket {
			continue
		}
		ps, ok := referenceMatch(ru.Match, path, r)
		if ok {
			return ru.Value, ps, true
		}
	}
	return "", nil, false
}

func referenceMatch(m config.Match, path string, r *http.Request) (route.Params, bool) {
	if len(m.Methods) > 0 && !contains(m.Methods, r.Method) {
		return nil, false
	}
	var ps route.Params
	if p := m.Path; p != nil {
		switch {
		case p.Exact != "":
			if path != p.Exact {
				return nil, false
			}
		case p.Prefix != "":
			dir := strings.TrimSuffix(p.Prefix, "/") + "/"
			if path != p.Prefix && !strings.HasPrefix(path, dir) {
				return nil, false
			}
		case p.Regex != "":
			if !regexp.MustCompile("^(?:" + p.Regex + ")$").MatchString(path) {
				return nil, false
			}
		default:
			tp, err := route.ParseTemplate(p.Template)
			if err != nil {
				panic(err)
			}
			var ok bool
			if ps, ok = tp.Match(path); !ok {
				return nil, false
			}
		}
	}
	for _, h := range m.Headers {
		vals := r.Header.Values(h.Name)
		switch {
		case h.Absent && len(vals) > 0, h.Exact != "" && !contains(vals, h.Exact):
			return nil, false
		}
	}
	return ps, true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
