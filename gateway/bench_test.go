package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// BenchmarkProxyPath drives GETs with 1 KiB responses through, side by side: the
// backend directly, Go's httputil.ReverseProxy, and the Portcullis ingress. Client,
// proxy and backend share the process, so compare the ratios, not the absolutes.
func BenchmarkProxyPath(b *testing.B) {
	body := strings.Repeat("x", 1024)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	}))
	defer be.Close()
	u, _ := url.Parse(be.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	goproxy := httptest.NewServer(rp)
	defer goproxy.Close()

	g, base := startB(b, listenerYAML+clusterYAML("be", be.Listener.Addr().String())+`---
`+header+`kind: Route
metadata: {name: r}
spec:
  listeners: [pub]
  rules:
    - match: {path: {prefix: /}}
      forward: {backends: [{cluster: be}]}
`)
	defer g.Shutdown()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, tc := range []struct{ name, url string }{
		{"direct", be.URL + "/"},
		{"httputil", goproxy.URL + "/"},
		{"portcullis", base + "/"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(tc.url)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		})
	}
}
