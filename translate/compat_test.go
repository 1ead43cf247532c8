package translate_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A compatCase is one request sent both to grpc-gateway (when the golden files
// are written) and to the transcode filter (every run).
type compatCase struct {
	Name    string
	Method  string
	Path    string
	Headers map[string]string
	Body    string
	// Local marks an error the transcoder answers itself (bad JSON, bad query
	// value...): its wording is ours, so only status, code and details are
	// compared, and Mention must appear in our message.
	Local   bool
	Mention string
	// Diverge is a deliberate difference from grpc-gateway: our status and
	// code instead of the golden ones (docs/translate.md lists them).
	Diverge *divergence
}

type divergence struct {
	Status int
	Code   int
	Why    string
}

const (
	dune   = "/v1/shelves/s1/books/dune"
	cosmos = "/v1/shelves/s1/books/cosmos"
)

var compatCases = []compatCase{
	// Successes: bindings, path variables, query parameters, bodies.
	{Name: "get_book", Method: "GET", Path: dune},
	{Name: "get_book_unpopulated_fields", Method: "GET", Path: cosmos},
	{Name: "get_book_escaped_path", Method: "GET", Path: "/v1/shelves/s1/books/d%75ne"},
	{Name: "get_book_query_cannot_override_path", Method: "GET", Path: dune + "?name=shelves/s2/books/spqr"},
	{Name: "get_title_response_body", Method: "GET", Path: dune + "/title"},
	{Name: "get_title_other_book", Method: "GET", Path: "/v1/shelves/s2/books/spqr/title"},
	{Name: "list_shelf", Method: "GET", Path: "/v1/shelves/s1/books"},
	{Name: "list_additional_binding", Method: "GET", Path: "/v1/books"},
	{Name: "list_repeated_tags", Method: "GET", Path: "/v1/books?tags=space&tags=classic"},
	{Name: "list_enum_by_name", Method: "GET", Path: "/v1/books?genre=SCIENCE"},
	{Name: "list_enum_by_number", Method: "GET", Path: "/v1/books?genre=3"},
	{Name: "list_repeated_enums", Method: "GET", Path: "/v1/books?genres=FICTION&genres=HISTORY"},
	{Name: "list_nested_field", Method: "GET", Path: "/v1/books?filter.author.display_name=Carl%20Sagan"},
	{Name: "list_nested_field_camel_case", Method: "GET", Path: "/v1/books?filter.author.displayName=Mary%20Beard"},
	{Name: "list_timestamp_param", Method: "GET", Path: "/v1/books?filter.published_after=2020-01-01T00:00:00Z"},
	{Name: "list_bool_wrapper_param", Method: "GET", Path: "/v1/books?filter.available=true"},
	{Name: "list_duration_param", Method: "GET", Path: "/v1/books?filter.max_read_time=3600s"},
	{Name: "list_field_mask_param", Method: "GET", Path: "/v1/books?read_mask=title,author"},
	{Name: "list_page_size", Method: "GET", Path: "/v1/books?page_size=1"},
	{Name: "list_camel_case_param", Method: "GET", Path: "/v1/books?pageSize=2"},
	{Name: "list_unknown_param_ignored", Method: "GET", Path: "/v1/books?cachebust=123&tags=rome"},
	{Name: "list_path_beats_query", Method: "GET", Path: "/v1/shelves/s1/books?parent=shelves/s2"},
	{Name: "create_book_all_types", Method: "POST", Path: "/v1/shelves/s1/books?book_id=new",
		Body: `{"title":"New","genre":"HISTORY","tags":["a","b"],"isbn":"123","readTime":"90s","published":"2020-05-06T07:08:09Z","pageCount":10,"cover":"Y292ZXI=","labels":{"k":"v"},"rating":2.5,"available":true}`},
	{Name: "create_book_proto_names_in_body", Method: "POST", Path: "/v1/shelves/s1/books?book_id=snake",
		Body: `{"author":{"display_name":"Snake Case","born_year":1999},"read_time":"1.5s","page_count":3}`},
	{Name: "create_book_empty_body", Method: "POST", Path: "/v1/shelves/s2/books?book_id=blank"},
	{Name: "create_book_query_into_body_field_ignored", Method: "POST", Path: "/v1/shelves/s1/books?book_id=q&book.title=Query", Body: `{"title":"Body"}`},
	{Name: "create_book_enum_number_in_body", Method: "POST", Path: "/v1/shelves/s1/books?book_id=n", Body: `{"genre":2}`},
	{Name: "update_book_mask_from_body", Method: "PATCH", Path: dune, Body: `{"title":"Dune II","author":{"bornYear":1921}}`},
	{Name: "update_book_mask_from_query", Method: "PATCH", Path: dune + "?update_mask=title", Body: `{"title":"Only Title","rating":1}`},
	{Name: "delete_book", Method: "DELETE", Path: cosmos},
	{Name: "delete_book_with_query_bool", Method: "DELETE", Path: dune + "?force=true"},
	{Name: "archive_custom_verb", Method: "POST", Path: dune + ":archive", Body: `{"retention":"3600s","reason":"old"}`},
	{Name: "archive_body_star_ignores_query", Method: "POST", Path: dune + ":archive?reason=query", Body: `{"reason":"body"}`},
	{Name: "metadata_in_and_out", Method: "GET", Path: dune, Headers: map[string]string{"Grpc-Metadata-X-User": "alice"}},
	// Server streaming.
	{Name: "watch_stream", Method: "GET", Path: "/v1/shelves/s1:watch?count=3"},
	{Name: "watch_empty_stream", Method: "GET", Path: "/v1/shelves/s1:watch?count=0"},
	{Name: "watch_error_after_messages", Method: "GET", Path: "/v1/shelves/s1:watch?count=2&fail_code=14"},
	{Name: "watch_error_before_messages", Method: "GET", Path: "/v1/shelves/s1:watch?count=0&fail_code=9"},
	// Client streaming: one request message per line.
	{Name: "create_books_stream", Method: "POST", Path: "/v1/books:batchCreate", Headers: ndjson,
		Body: `{"parent":"shelves/s1","bookId":"a","book":{"title":"A","genre":"SCIENCE"}}` + "\n\n" + `{"parent":"shelves/s2","book_id":"b","book":{"isbn":"7"}}`},
	{Name: "create_books_empty_stream", Method: "POST", Path: "/v1/books:batchCreate", Headers: ndjson},
	{Name: "create_books_service_error", Method: "POST", Path: "/v1/books:batchCreate", Headers: ndjson,
		Body: `{"parent":"shelves/s1","bookId":"a"}` + "\n" + `{"parent":"shelves/s1"}` + "\n"},
	{Name: "create_books_bad_json_line", Method: "POST", Path: "/v1/books:batchCreate", Headers: ndjson,
		Body: `{"parent":"shelves/s1","bookId":"a"}` + "\n" + `{"bookId":` + "\n", Local: true, Mention: "message 2"},
	// gRPC errors, mapped with their details.
	{Name: "grpc_not_found_with_details", Method: "GET", Path: "/v1/shelves/s1/books/missing"},
	{Name: "grpc_permission_denied", Method: "GET", Path: "/v1/shelves/s1/books/secret"},
	{Name: "grpc_data_loss_escaped_message", Method: "GET", Path: "/v1/shelves/s1/books/broken"},
	{Name: "grpc_invalid_argument_with_details", Method: "POST", Path: "/v1/shelves/s1/books", Body: `{"title":"no id"}`},
	{Name: "grpc_already_exists", Method: "POST", Path: "/v1/shelves/s1/books?book_id=dune", Body: `{}`},
	{Name: "grpc_failed_precondition_with_details", Method: "DELETE", Path: dune},
	{Name: "grpc_out_of_range_with_details", Method: "GET", Path: "/v1/books?page_size=1000"},
	{Name: "grpc_out_of_range_body_duration", Method: "POST", Path: dune + ":archive", Body: `{"retention":"-5s"}`},
	{Name: "grpc_deadline_from_header", Method: "GET", Path: "/v1/shelves/s1/books/slow", Headers: map[string]string{"Grpc-Timeout": "200m"}, Local: true},
	{Name: "grpc_stream_invalid_argument", Method: "GET", Path: "/v1/shelves/s1:watch?count=99"},
	// Routing errors.
	{Name: "no_binding_404", Method: "GET", Path: "/v1/nothing/here"},
	{Name: "no_binding_wrong_verb", Method: "POST", Path: dune + ":burn", Body: `{}`, Diverge: methodNotAllowed},
	{Name: "method_not_allowed_405", Method: "PUT", Path: dune, Body: `{}`, Diverge: methodNotAllowed},
	// Requests the transcoder refuses itself.
	{Name: "bad_json_body", Method: "POST", Path: "/v1/shelves/s1/books?book_id=x", Body: `{"title":`, Local: true, Mention: "body"},
	{Name: "body_not_an_object", Method: "POST", Path: "/v1/shelves/s1/books?book_id=x", Body: `[1,2]`, Local: true, Mention: "body"},
	{Name: "bad_enum_in_body", Method: "POST", Path: "/v1/shelves/s1/books?book_id=x", Body: `{"genre":"POETRY"}`, Local: true, Mention: "POETRY",
		Diverge: &divergence{Status: 400, Code: 3, Why: "grpc-gateway's DiscardUnknown also drops unknown enum names; the transcoder refuses them"}},
	{Name: "wrong_type_in_body", Method: "POST", Path: "/v1/shelves/s1/books?book_id=x", Body: `{"isbn":"abc"}`, Local: true, Mention: "isbn"},
	{Name: "bad_timestamp_in_body", Method: "POST", Path: "/v1/shelves/s1/books?book_id=x", Body: `{"published":"yesterday"}`, Local: true, Mention: "Timestamp"},
	{Name: "bad_enum_in_query", Method: "GET", Path: "/v1/books?genre=POETRY", Local: true, Mention: "POETRY"},
	{Name: "bad_int_in_query", Method: "GET", Path: "/v1/books?page_size=abc", Local: true, Mention: "page_size"},
	{Name: "bad_timestamp_in_query", Method: "GET", Path: "/v1/books?filter.published_after=yesterday", Local: true, Mention: "filter.published_after"},
	{Name: "two_values_for_singular_param", Method: "GET", Path: "/v1/books?page_size=1&page_size=2", Local: true, Mention: "page_size"},
	{Name: "bad_bool_in_query", Method: "DELETE", Path: dune + "?force=maybe", Local: true, Mention: "force"},
	{Name: "unknown_body_field", Method: "POST", Path: "/v1/shelves/s1/books?book_id=x", Body: `{"nope":1}`, Local: true, Mention: "nope",
		Diverge: &divergence{Status: 400, Code: 3, Why: "grpc-gateway discards unknown fields; the transcoder refuses them unless json.discardUnknown"}},
}

// ndjson is the content type of a client stream's body.
var ndjson = map[string]string{"Content-Type": "application/x-ndjson"}

// methodNotAllowed: grpc-gateway answers UNIMPLEMENTED with that code's 501; a
// path that exists for other methods is 405 in HTTP (RFC 9110 §15.5.6), with Allow.
var methodNotAllowed = &divergence{Status: 405, Code: 12, Why: "405 with Allow, not 501, for a path bound to other methods"}

// golden is one case as written to testdata/golden/<name>.json.
type golden struct {
	Request  goldenRequest  `json:"request"`
	Response goldenResponse `json:"response"`
}

type goldenRequest struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
}

type goldenResponse struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	// Body is the parsed JSON body; for a stream, the list of its records.
	Body any `json:"body"`
	// Allow is the Allow header; not recorded (grpc-gateway sends none).
	Allow string `json:"-"`
}

// comparedHeaders are the response headers the cases compare.
var comparedHeaders = []string{"Content-Type", "Grpc-Metadata-X-Request-Id", "Grpc-Metadata-X-Echo-User"}

func doCase(t *testing.T, base string, c compatCase) goldenResponse {
	t.Helper()
	var body io.Reader
	if c.Body != "" {
		body = strings.NewReader(c.Body)
	}
	req, err := http.NewRequest(c.Method, base+c.Path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.Body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.Headers {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := goldenResponse{Status: resp.StatusCode, Headers: map[string]string{}, Allow: resp.Header.Get("Allow")}
	for _, h := range comparedHeaders {
		if v := resp.Header.Get(h); v != "" {
			out.Headers[h] = v
		}
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		delete(out.Headers, "Content-Type") // nothing to type; net/http may or may not name one
		return out
	}
	if strings.Contains(c.Path, ":watch") {
		var records []any
		for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
			var v any
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatalf("stream record %q is not JSON: %v", line, err)
			}
			records = append(records, v)
		}
		out.Body = records
		return out
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("body %q is not JSON: %v", raw, err)
	}
	out.Body = v
	return out
}

func goldenPath(name string) string { return filepath.Join("testdata", "golden", name+".json") }

// TestWriteGolden records grpc-gateway's answers; it runs only with
// PORTCULLIS_UPDATE_GOLDEN=1 (scripts/translate-golden.sh).
func TestWriteGolden(t *testing.T) {
	if os.Getenv("PORTCULLIS_UPDATE_GOLDEN") != "1" {
		t.Skip("set PORTCULLIS_UPDATE_GOLDEN=1 to rewrite testdata/golden from grpc-gateway")
	}
	gw := startGRPCGateway(t, startLibrary(t))
	if err := os.MkdirAll(filepath.Join("testdata", "golden"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range compatCases {
		g := golden{
			Request:  goldenRequest{Method: c.Method, Path: c.Path, Headers: c.Headers, Body: c.Body},
			Response: doCase(t, gw.URL, c),
		}
		b, err := json.MarshalIndent(g, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath(c.Name), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCompatibility sends every case through the transcode filter (real HTTP,
// the core's forwarder, a real gRPC server) and compares with grpc-gateway's
// recorded answers.
func TestCompatibility(t *testing.T) {
	if len(compatCases) < 50 {
		t.Fatalf("only %d cases", len(compatCases))
	}
	srv := startTranscoder(t, libraryFilterConfig, startLibrary(t))
	seen := map[string]bool{}
	for _, c := range compatCases {
		if seen[c.Name] {
			t.Fatalf("case %s twice", c.Name)
		}
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			raw, err := os.ReadFile(goldenPath(c.Name))
			if err != nil {
				t.Fatalf("no golden file (run with PORTCULLIS_UPDATE_GOLDEN=1): %v", err)
			}
			var g golden
			if err := json.Unmarshal(raw, &g); err != nil {
				t.Fatal(err)
			}
			want := g.Response
			if g.Request.Path != c.Path || g.Request.Body != c.Body || g.Request.Method != c.Method {
				t.Fatalf("the golden file was recorded for another request (%s %s); rewrite it", g.Request.Method, g.Request.Path)
			}
			got := doCase(t, srv.URL, c)
			compare(t, c, want, got)
		})
	}
}

func compare(t *testing.T, c compatCase, want, got goldenResponse) {
	t.Helper()
	if c.Diverge != nil {
		if want.Status == c.Diverge.Status {
			t.Errorf("recorded divergence (%s) is gone: grpc-gateway now answers %d too", c.Diverge.Why, want.Status)
		}
		want = goldenResponse{Status: c.Diverge.Status, Headers: map[string]string{"Content-Type": "application/json"},
			Body: map[string]any{"code": float64(c.Diverge.Code), "details": []any{}}}
	}
	if got.Status != want.Status {
		t.Fatalf("status %d, want %d; body %v", got.Status, want.Status, got.Body)
	}
	if c.Diverge == methodNotAllowed && got.Allow == "" {
		t.Errorf("a 405 without an Allow header")
	}
	if !reflect.DeepEqual(got.Headers, want.Headers) {
		t.Errorf("headers %v, want %v", got.Headers, want.Headers)
	}
	if c.Local || c.Diverge != nil {
		gm, _ := got.Body.(map[string]any)
		wm, _ := want.Body.(map[string]any)
		if gm == nil || wm == nil {
			t.Fatalf("error bodies: got %v, want %v", got.Body, want.Body)
		}
		msg, _ := gm["message"].(string)
		if msg == "" || !strings.Contains(msg, c.Mention) {
			t.Errorf("message %q does not mention %q", msg, c.Mention)
		}
		if !reflect.DeepEqual(gm["code"], wm["code"]) || !reflect.DeepEqual(gm["details"], wm["details"]) {
			t.Errorf("code/details %v %v, want %v %v", gm["code"], gm["details"], wm["code"], wm["details"])
		}
		return
	}
	if !reflect.DeepEqual(got.Body, want.Body) {
		gb, _ := json.Marshal(got.Body)
		wb, _ := json.Marshal(want.Body)
		t.Errorf("body differs:\n got %s\nwant %s", gb, wb)
	}
}

// TestGoldenFilesAreUsed fails on golden files no case reads (a renamed case).
func TestGoldenFilesAreUsed(t *testing.T) {
	names := map[string]bool{}
	for _, c := range compatCases {
		names[c.Name+".json"] = true
	}
	entries, err := os.ReadDir(filepath.Join("testdata", "golden"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !names[e.Name()] {
			t.Errorf("testdata/golden/%s belongs to no case", e.Name())
		}
	}
	if len(entries) != len(compatCases) {
		t.Errorf("%d golden files for %d cases", len(entries), len(compatCases))
	}
}
