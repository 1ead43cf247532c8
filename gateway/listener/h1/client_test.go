package h1_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNetHTTPClient drives ServeConn with net/http's own client, sequentially
// and concurrently, and checks that keep-alive connections are reused.
func TestNetHTTPClient(t *testing.T) {
	s := startH1(t, testHandler(), defaultLimits, nil)
	tr := &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true, ExpectContinueTimeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	base := "http://" + s.addr

	// do runs one of several request kinds and checks the answer.
	do := func(i int) error {
		var req *http.Request
		var want string
		switch i % 6 {
		case 0:
			req, _ = http.NewRequest("GET", base+"/1k", nil)
			want = strings.Repeat("0123456789abcdef", 64)
		case 1:
			body := fmt.Sprintf("request %d", i)
			req, _ = http.NewRequest("POST", base+"/echo", strings.NewReader(body))
			want = body
		case 2: // chunked upload (unknown length) behind Expect: 100-continue
			body := strings.Repeat("y", 10000+i)
			req, _ = http.NewRequest("PUT", base+"/echo", io.NopCloser(strings.NewReader(body)))
			req.Header.Set("Expect", "100-continue")
			want = body
		case 3:
			req, _ = http.NewRequest("GET", base+"/stream", nil)
			want = strings.Repeat(strings.Repeat("0123456789abcdef", 64), 64)
		case 4:
			req, _ = http.NewRequest("GET", base+"/trailer", nil)
			want = "body"
		case 5:
			req, _ = http.NewRequest("HEAD", base+"/1k", nil)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || string(b) != want {
			return fmt.Errorf("request %d: %d %.40q", i, resp.StatusCode, b)
		}
		if i%6 == 4 && (resp.Trailer.Get("X-T1") != "one" || resp.Trailer.Get("X-T2") != "two") {
			return fmt.Errorf("trailers %v", resp.Trailer)
		}
		if i%6 == 5 && resp.ContentLength != 1024 {
			return fmt.Errorf("HEAD Content-Length %d", resp.ContentLength)
		}
		return nil
	}

	const sequential = 300
	for i := 0; i < sequential; i++ {
		if err := do(i); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.accepts.Load(); n != 1 {
		t.Fatalf("%d connections for %d sequential requests", n, sequential)
	}

	const workers, each = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := do(w*each + i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	waitGroup(t, &wg, 60*time.Second, "concurrent clients did not finish")
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Connections beyond the 8 workers come only from the transport's dial
	// races; reuse means far fewer connections than requests.
	if n := s.accepts.Load(); n > 1+2*workers {
		t.Errorf("%d connections for %d concurrent requests", n, workers*each)
	}
	t.Logf("%d requests over %d connections", sequential+workers*each, s.accepts.Load())
}

// A large upload through net/http's client: read fully, connection reused.
func TestNetHTTPClientLargeUpload(t *testing.T) {
	s := startH1(t, testHandler(), defaultLimits, nil)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	body := bytes.Repeat([]byte("z"), 8<<20)
	for i := 0; i < 3; i++ {
		resp, err := client.Post("http://"+s.addr+"/echo", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(b, body) {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(body), len(b), err)
		}
	}
	if n := s.accepts.Load(); n != 1 {
		t.Errorf("%d connections", n)
	}
}
