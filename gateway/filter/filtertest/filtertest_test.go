package filtertest_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
)

// probe is a filter type whose factory decodes {a: int, b: int} and records its Build.
const probe = "filtertest-probe"

var last filter.Build

func init() {
	filter.Register(probe, func(b filter.Build) (filter.Filter, error) {
		last = b
		var cfg struct{ A, B int }
		if err := b.Config.Decode(&cfg); err != nil {
			return nil, err
		}
		return filter.Func(func(w http.ResponseWriter, r *http.Request, next filter.Handler) error {
			return next.ServeHTTP(w, r)
		}), nil
	})
}

func TestLineMatchesDoc(t *testing.T) {
	for _, o := range [][]filtertest.Option{nil, {filtertest.WithClusters("shadow", "other")}} {
		doc := strings.Split(filtertest.Doc(probe, "a: 1\nb: 2", o...), "\n")
		if got := strings.TrimSpace(doc[filtertest.Line(probe, 2, o...)-1]); got != "b: 2" {
			t.Errorf("Line(2) is %q", got)
		}
		_, err := filtertest.Build(t, probe, "a: 1\nc: 2", o...)
		filtertest.CheckError(t, err, []string{fmt.Sprintf("filters.yaml:%d", filtertest.Line(probe, 2, o...)), "c"})
	}
}

func TestOptions(t *testing.T) {
	ups := filtertest.Upstreams{"shadow": filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })}
	var built int
	filtertest.MustBuild(t, probe, "a: 1", filtertest.WithClusters("shadow"),
		filtertest.WithBuild(func(b *filter.Build) { b.Upstreams, b.DataDir = ups, "/data" }),
		filtertest.WithBuilt(func(testing.TB, filter.Filter) { built++ }))
	if _, ok := last.Upstreams.Upstream("shadow"); !ok || last.DataDir != "/data" || last.Route != "default/r#0" {
		t.Errorf("filter.Build = %+v", last)
	}
	if built != 1 {
		t.Errorf("WithBuilt ran %d times", built)
	}
	filtertest.Registered(t, probe)
	filtertest.CheckError(t, nil, nil)
}
