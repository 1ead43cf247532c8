package translate_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClientStreamBeyondGRPCGateway covers what the golden files cannot (grpc-
// gateway refuses path variables in client-streaming rules): path variables set
// in every message, the per-message size limit, and a body sent slowly, line
// by line, which the call takes as it comes.
func TestClientStreamBeyondGRPCGateway(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(`type: google.api.Service
config_version: 3
http:
  rules:
    - selector: portcullis.translate.test.library.v1.Library.CreateBooks
      post: /v1/{parent=shelves/*}/books:batchCreate
      body: "*"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startTranscoder(t, `descriptorSetFile: internal/testpb/testdata/library.binpb
httpRulesFile: `+rules+`
services: [portcullis.translate.test.library.v1.Library]
cluster: grpc
maxBodyBytes: 100
`, startLibrary(t))
	url := srv.URL + "/v1/shelves/s9/books:batchCreate"
	ndjson := map[string]string{"Content-Type": "application/x-ndjson"}

	t.Run("path variable in every message", func(t *testing.T) {
		resp, body := send(t, "POST", url, `{"bookId":"a"}`+"\n"+`{"bookId":"b","parent":"shelves/other"}`+"\n", ndjson)
		var got struct {
			Books []struct{ Name string }
			Count int
		}
		if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 || got.Count != 2 ||
			got.Books[0].Name != "shelves/s9/books/a" || got.Books[1].Name != "shelves/s9/books/b" {
			t.Fatalf("%d %s, want both books on shelf s9", resp.StatusCode, body)
		}
	})
	t.Run("limit is per message", func(t *testing.T) {
		line := `{"bookId":"x","book":{"title":"` + strings.Repeat("t", 40) + `"}}` + "\n"
		resp, body := send(t, "POST", url, strings.Repeat(line, 5), ndjson)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"count":5`) {
			t.Fatalf("five small messages, more than the limit together: %d %s", resp.StatusCode, body)
		}
		big := `{"bookId":"x","book":{"title":"` + strings.Repeat("t", 200) + `"}}` + "\n"
		resp, body = send(t, "POST", url, line+big, ndjson)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "message 2") {
			t.Fatalf("one message over the limit: %d %s, want 413 naming message 2", resp.StatusCode, body)
		}
	})
	t.Run("body sent line by line", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			for _, id := range []string{"p", "q", "r"} {
				pw.Write([]byte(`{"bookId":"` + id + `"}` + "\n"))
				time.Sleep(20 * time.Millisecond) // a client that produces its stream over time
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", url, pr)
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"count":3`) || !strings.Contains(string(body), "shelves/s9/books/r") {
			t.Fatalf("chunked stream: %d %s", resp.StatusCode, body)
		}
	})
}
