package headers

import (
	"fmt"
	"net/textproto"
	"sort"

	"golang.org/x/net/http/httpguts"

	"github.com/portcullis/portcullis/gateway/filter"
)

// Type is the name under which the filter is registered ("type: headers" in a Route rule).
const Type = "headers"

func init() { filter.Register(Type, Factory) }

// Config is the filter's config as written in a Route rule.
type Config struct {
	// Request changes the request before it is passed on.
	Request Ops `yaml:"request,omitempty"`
	// Response changes the response when its headers are written.
	Response Ops `yaml:"response,omitempty"`
}

// Ops are the changes to one header map. They are applied in the order remove, set,
// add; a name may appear in only one of the three, so that order never matters.
type Ops struct {
	// Set replaces every value of the header with one value (a template).
	Set map[string]string `yaml:"set,omitempty"`
	// Add appends a value (a template), keeping the values already there.
	Add map[string]string `yaml:"add,omitempty"`
	// Remove deletes every value of the named headers.
	Remove []string `yaml:"remove,omitempty"`
}

// Factory decodes and checks the config and builds the filter.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	var probs filter.Problems
	req := compileOps("request", cfg.Request, &probs)
	resp := compileOps("response", cfg.Response, &probs)
	if req.empty() && resp.empty() && len(probs) == 0 {
		probs.Add("", "at least one of request and response must change something")
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return &headersFilter{req: req, resp: resp}, nil
}

// refused are names this filter may not touch: the hop-by-hop headers are the
// proxy's and never reach the other side anyway; Host is the route's rewrite.host;
// Content-Length is message framing, which a header edit must never desynchronise.
var refused = map[string]string{
	"Connection":        "a hop-by-hop header",
	"Keep-Alive":        "a hop-by-hop header",
	"Proxy-Connection":  "a hop-by-hop header",
	"Transfer-Encoding": "a hop-by-hop header",
	"Upgrade":           "a hop-by-hop header",
	"Te":                "a hop-by-hop header",
	"Trailer":           "a hop-by-hop header",
	"Host":              "set by the route's forward.rewrite.host",
	"Content-Length":    "message framing, owned by the proxy",
}

// compileOps checks one side's ops and turns them into their runtime form, with
// canonical names and pre-parsed templates, sorted so that application is stable.
func compileOps(side string, o Ops, probs *filter.Problems) ops {
	var out ops
	seen := map[string]string{} // canonical name -> field that named it first
	checkName := func(field, name string) (string, bool) {
		if !httpguts.ValidHeaderFieldName(name) {
			probs.Add(field, "%q is not a valid header name", name)
			return "", false
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		if why, bad := refused[key]; bad {
			probs.Add(field, "%q may not be changed: it is %s", name, why)
			return "", false
		}
		if prev, dup := seen[key]; dup {
			probs.Add(field, "%q is already changed by %s; a header may appear once per side", name, prev)
			return "", false
		}
		seen[key] = field
		return key, true
	}
	for i, name := range o.Remove {
		if key, ok := checkName(fmt.Sprintf("%s.remove[%d]", side, i), name); ok {
			out.remove = append(out.remove, key)
		}
	}
	compile := func(op string, m map[string]string) []headerOp {
		var list []headerOp
		for _, name := range sortedKeys(m) {
			field := side + "." + op + "." + name
			key, ok := checkName(field, name)
			if !ok {
				continue
			}
			t, err := parseTemplate(m[name])
			if err != nil {
				probs.Add(field, "%v", err)
				continue
			}
			list = append(list, headerOp{name: key, value: t})
		}
		return list
	}
	out.set = compile("set", o.Set)
	out.add = compile("add", o.Add)
	sort.Strings(out.remove)
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
