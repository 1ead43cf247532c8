package translate_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/portcullis/portcullis/translate"
	"github.com/portcullis/portcullis/translate/internal/testpb"
)

func send(t *testing.T, method, url string, body string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestServerSentEvents(t *testing.T) {
	srv := startTranscoder(t, libraryFilterConfig, startLibrary(t))
	resp, body := send(t, "GET", srv.URL+"/v1/shelves/s1:watch?count=2&fail_code=14", "", map[string]string{"Accept": "text/event-stream"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var events []string
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			events = append(events, l)
		}
	}
	want := []string{`data: {"book":"shelves/s1/books/b0","seq":1}`, `data: {"book":"shelves/s1/books/b1","seq":2}`, `event: error`}
	if len(events) != 4 {
		t.Fatalf("events %q", events)
	}
	for i, w := range want {
		if strings.ReplaceAll(events[i], " ", "") != strings.ReplaceAll(w, " ", "") {
			t.Errorf("line %d = %q, want %q", i, events[i], w)
		}
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(strings.TrimPrefix(events[3], "data: ")), &st); err != nil || st["code"] != float64(14) {
		t.Errorf("error event %q (%v), want code 14", events[3], err)
	}
}

func TestMetadataAllowLists(t *testing.T) {
	addr := startLibrary(t)
	srv := startTranscoder(t, `descriptorSetFile: internal/testpb/testdata/library.binpb
services: [portcullis.translate.test.library.v1.Library]
cluster: grpc
requestHeaders: [X-User]
responseMetadata: [x-echo-user, x-cost]
`, addr)
	t.Run("allow-listed header in, allow-listed metadata out", func(t *testing.T) {
		resp, _ := send(t, "GET", srv.URL+"/v1/shelves/s1/books/dune", "", map[string]string{"X-User": "bob"})
		if got := resp.Header.Get("Grpc-Metadata-X-Echo-User"); got != "bob" {
			t.Errorf("x-user did not reach the service: echo %q", got)
		}
		if got := resp.Header.Get("Grpc-Metadata-X-Request-Id"); got != "" {
			t.Errorf("x-request-id is not allow-listed but came back: %q", got)
		}
	})
	t.Run("Grpc-Metadata headers are off by default", func(t *testing.T) {
		resp, _ := send(t, "GET", srv.URL+"/v1/shelves/s1/books/dune", "", map[string]string{"Grpc-Metadata-X-User": "mallory"})
		if got := resp.Header.Get("Grpc-Metadata-X-Echo-User"); got != "" {
			t.Errorf("a Grpc-Metadata header was passed without grpcMetadataHeaders: %q", got)
		}
	})
	t.Run("trailers only to clients that take them", func(t *testing.T) {
		resp, _ := send(t, "GET", srv.URL+"/v1/shelves/s1/books/dune", "", map[string]string{"TE": "trailers"})
		if got := resp.Trailer.Get("Grpc-Trailer-X-Cost"); got != "7" {
			t.Errorf("trailer Grpc-Trailer-X-Cost = %q, want 7 (trailers %v)", got, resp.Trailer)
		}
		resp, _ = send(t, "GET", srv.URL+"/v1/shelves/s1/books/dune", "", nil)
		if got := resp.Trailer.Get("Grpc-Trailer-X-Cost"); got != "" {
			t.Errorf("trailer sent to a client without TE: trailers: %q", got)
		}
	})
}

func TestJSONOptionsAndLimits(t *testing.T) {
	addr := startLibrary(t)
	srv := startTranscoder(t, `descriptorSetFile: internal/testpb/testdata/library.binpb
services: [portcullis.translate.test.library.v1.Library]
cluster: grpc
maxBodyBytes: 64
timeout: 300ms
json: {useProtoNames: true, omitUnpopulated: true, useEnumNumbers: true, discardUnknown: true}
`, addr)
	resp, body := send(t, "GET", srv.URL+"/v1/shelves/s1/books/cosmos", "", nil)
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if _, ok := got["display_name"]; ok {
		t.Errorf("nested name at top level: %v", got)
	}
	if a, _ := got["author"].(map[string]any); a["display_name"] != "Carl Sagan" {
		t.Errorf("useProtoNames: author %v", got["author"])
	}
	if _, ok := got["rating"]; ok {
		t.Errorf("omitUnpopulated: rating 0 written: %v", got)
	}
	if got["genre"] != float64(2) {
		t.Errorf("useEnumNumbers: genre %v", got["genre"])
	}
	resp, body = send(t, "POST", srv.URL+"/v1/shelves/s1/books?book_id=x", `{"title":"`+strings.Repeat("x", 100)+`"}`, nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "larger than 64 bytes") {
		t.Errorf("over the body limit: %d %s", resp.StatusCode, body)
	}
	resp, body = send(t, "POST", srv.URL+"/v1/shelves/s1/books?book_id=x", `{"nope":1}`, nil)
	if resp.StatusCode != 200 {
		t.Errorf("discardUnknown: %d %s", resp.StatusCode, body)
	}
	start := time.Now()
	resp, body = send(t, "GET", srv.URL+"/v1/shelves/s1/books/slow", "", nil)
	if resp.StatusCode != http.StatusGatewayTimeout || time.Since(start) > 4*time.Second {
		t.Errorf("route timeout: %d %s after %v", resp.StatusCode, body, time.Since(start))
	}
	resp, body = send(t, "GET", srv.URL+"/v1/shelves/s1/books/dune", "", map[string]string{"Grpc-Timeout": "soon"})
	if resp.StatusCode != 400 || !strings.Contains(string(body), "Grpc-Timeout") {
		t.Errorf("bad Grpc-Timeout: %d %s", resp.StatusCode, body)
	}
}

func TestUpstreamDown(t *testing.T) {
	// A port with nothing listening: the core's forwarder fails to connect.
	srv := startTranscoder(t, libraryFilterConfig, "127.0.0.1:1")
	resp, body := send(t, "GET", srv.URL+"/v1/shelves/s1/books/dune", "", nil)
	var st map[string]any
	if err := json.Unmarshal(body, &st); err != nil || resp.StatusCode != 503 || st["code"] != float64(14) {
		t.Fatalf("got %d %s, want 503 UNAVAILABLE as status JSON", resp.StatusCode, body)
	}
}

func TestNewErrors(t *testing.T) {
	sd := testpb.File_library_proto.Services().Get(0)
	tests := []struct {
		name  string
		rules map[string]*annotations.HttpRule
		want  string
	}{
		{"rule for a missing method", map[string]*annotations.HttpRule{"x.Y.Z": {Pattern: &annotations.HttpRule_Get{Get: "/x"}}}, "no such method"},
		{"unknown path field", map[string]*annotations.HttpRule{string(sd.FullName()) + ".GetBook": {Pattern: &annotations.HttpRule_Get{Get: "/v1/{nope}"}}}, `has no field "nope"`},
		{"unknown body field", map[string]*annotations.HttpRule{string(sd.FullName()) + ".CreateBook": {Pattern: &annotations.HttpRule_Post{Post: "/v1/x"}, Body: "nope"}}, `body "nope"`},
		{"unknown response field", map[string]*annotations.HttpRule{string(sd.FullName()) + ".GetBook": {Pattern: &annotations.HttpRule_Get{Get: "/v9/x"}, ResponseBody: "nope"}}, `response_body "nope"`},
		{"message in path", map[string]*annotations.HttpRule{string(sd.FullName()) + ".CreateBook": {Pattern: &annotations.HttpRule_Post{Post: "/v1/{book}"}}}, "has no string form"},
		{"client stream without body *", map[string]*annotations.HttpRule{string(sd.FullName()) + ".CreateBooks": {Pattern: &annotations.HttpRule_Post{Post: "/v1/batch"}, Body: "book"}}, `needs body: "*"`},
		{"conflict", map[string]*annotations.HttpRule{string(sd.FullName()) + ".DeleteBook": {Pattern: &annotations.HttpRule_Get{Get: "/v1/{name=shelves/*/books/*}"}}}, "conflicts with"},
	}
	for _, tc := range tests {
		_, err := translate.New([]protoreflect.ServiceDescriptor{sd}, tc.rules, translate.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	tr, err := translate.New([]protoreflect.ServiceDescriptor{sd}, nil, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tr.Routes()); n != 10 {
		t.Errorf("%d routes, want 10 (9 methods, one with an additional binding)", n)
	}
}
