package translate_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/portcullis/portcullis/translate"
	"github.com/portcullis/portcullis/translate/httprule"
	"github.com/portcullis/portcullis/translate/internal/testpb"
)

// FuzzQueryMapper feeds arbitrary query strings to the ListBooks binding (every
// kind of field: repeated, nested, enums, well-known types). The mapper must
// never panic, and must either refuse the query as a client error or build a
// message that serializes.
func FuzzQueryMapper(f *testing.F) {
	for _, s := range []string{"tags=a&tags=b", "genre=SCIENCE", "genre=3", "filter.author.display_name=x",
		"filter.author.displayName=y", "filter.published_after=2020-01-01T00:00:00Z", "filter.available=true",
		"filter.max_read_time=1m30s", "read_mask=title,author.displayName", "page_size=abc", "a[b]=c", "filter=1",
		"filter.author=1", "%zz", "genres=1&genres=FICTION", "filter.author.born_year=99999999999"} {
		f.Add(s)
	}
	sd := testpb.File_library_proto.Services().Get(0)
	tr, err := translate.New([]protoreflect.ServiceDescriptor{sd}, nil, translate.Options{})
	if err != nil {
		f.Fatal(err)
	}
	route, vals, res := tr.Match("GET", "/v1/books")
	if res != httprule.Found {
		f.Fatal("no route for /v1/books")
	}
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest(http.MethodGet, "/v1/books", nil)
		r.URL.RawQuery = query
		msg, err := tr.DecodeRequest(route, vals, r)
		if err != nil {
			if re, ok := err.(*translate.RequestError); !ok || re.Status != http.StatusBadRequest {
				t.Fatalf("query %q: %v is not a 400 RequestError", query, err)
			}
			return
		}
		if _, err := proto.Marshal(msg); err != nil {
			t.Fatalf("query %q built a message that does not serialize: %v", query, err)
		}
	})
}
