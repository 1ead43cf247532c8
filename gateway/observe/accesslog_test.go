package observe_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/observe"
)

func TestAccessLogModes(t *testing.T) {
	type req struct {
		status int
		reason string
	}
	reqs := []req{{200, ""}, {302, ""}, {404, ""}, {503, "no_healthy_endpoint"}, {200, "upstream_reset"}, {0, "client_gone"}}
	tests := []struct {
		mode    string
		logged  []bool // per reqs
		enabled map[int]bool
	}{
		{"", []bool{false, false, true, true, true, true}, map[int]bool{200: false, 399: false, 400: true, 503: true, 0: true}},
		{"errors", []bool{false, false, true, true, true, true}, map[int]bool{200: false, 404: true}},
		{"all", []bool{true, true, true, true, true, true}, map[int]bool{200: true, 500: true}},
		{"off", []bool{false, false, false, false, false, false}, map[int]bool{200: false, 500: false, 0: false}},
	}
	for _, tc := range tests {
		t.Run("mode="+tc.mode, func(t *testing.T) {
			o, logs := newObserver(t)
			if err := o.Configure(config.TelemetrySpec{AccessLog: tc.mode}); err != nil {
				t.Fatal(err)
			}
			for status, want := range tc.enabled {
				if got := o.AccessEnabled(status); got != want {
					t.Errorf("AccessEnabled(%d) = %v, want %v", status, got, want)
				}
			}
			for _, r := range reqs {
				o.Access(&observe.AccessRecord{Status: r.status, Reason: r.reason, Path: "/"})
			}
			got := logs.events(t, "access")
			var want []req
			for i, r := range reqs {
				if tc.logged[i] {
					want = append(want, r)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("logged %d records, want %d: %v", len(got), len(want), got)
			}
			for i, w := range want {
				if got[i]["status"] != float64(w.status) || got[i]["reason"] != w.reason {
					t.Errorf("record %d = status %v reason %v, want %d %q", i, got[i]["status"], got[i]["reason"], w.status, w.reason)
				}
			}
		})
	}
}

func TestConfigureRefusesUnknownAccessMode(t *testing.T) {
	o, _ := newObserver(t)
	if err := o.Configure(config.TelemetrySpec{AccessLog: "all"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Configure(config.TelemetrySpec{AccessLog: "verbose"}); err == nil {
		t.Fatal("Configure accepted accessLog \"verbose\"")
	}
	if !o.AccessEnabled(200) {
		t.Fatal("a refused Configure changed the running access-log mode")
	}
}

func TestAccessRecordFields(t *testing.T) {
	o, logs := newObserver(t)
	start := time.Date(2025, 3, 4, 5, 6, 7, 8_000_000, time.UTC)
	o.Access(&observe.AccessRecord{
		Time: start, Remote: "192.0.2.7:51234", Method: "GET", Host: "api.example.com",
		Path: "/v1/items?limit=10", Proto: "HTTP/1.1", Status: 502, BytesIn: 12, BytesOut: 345,
		Duration: 1500 * time.Microsecond, Route: "default/api#0", Cluster: "items", Upstream: "10.0.0.9:8080",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Identity: "spiffe://mesh/ns/a/sa/b", Reason: "upstream_reset",
		UserAgent: "k6/0.50", Referer: "https://app.example.com/page",
		Headers: http.Header{"X-Request-Id": {"abc-123"}},
	})
	recs := logs.events(t, "access")
	if len(recs) != 1 {
		t.Fatalf("logged %d records, want 1", len(recs))
	}
	want := map[string]any{
		"time": "2025-03-04T05:06:07.008Z", "level": "INFO", "msg": "access", "role": "ingress", "node": "node-1",
		"remote": "192.0.2.7:51234", "user": "spiffe://mesh/ns/a/sa/b", "request": "GET /v1/items?limit=10 HTTP/1.1",
		"status": 502.0, "bytes": 345.0, "bytes_in": 12.0, "method": "GET", "host": "api.example.com",
		"path": "/v1/items?limit=10", "proto": "HTTP/1.1", "duration_ms": 1.5, "route": "default/api#0",
		"cluster": "items", "upstream": "10.0.0.9:8080", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
		"reason": "upstream_reset", "user_agent": "k6/0.50", "referer": "https://app.example.com/page",
	}
	for k, v := range want {
		if recs[0][k] != v {
			t.Errorf("field %s = %#v, want %#v", k, recs[0][k], v)
		}
	}
	if h, _ := recs[0]["headers"].(map[string]any); h["X-Request-Id"] != "abc-123" {
		t.Errorf("headers = %v, want X-Request-Id abc-123", recs[0]["headers"])
	}
}

// TestAccessLogMasksSecrets is the promise of SM-DR22 as a user would check it:
// log a request full of credentials and look for them in the output.
func TestAccessLogMasksSecrets(t *testing.T) {
	const secret = "s3cr3t-VALUE"
	tests := []struct {
		name   string
		header http.Header
		path   string
		// want maps a header name (or "path"/"referer") to its logged value.
		want map[string]string
	}{
		{
			name:   "authorization keeps its scheme",
			header: http.Header{"Authorization": {"Bearer " + secret}, "Proxy-Authorization": {"Basic " + secret}},
			want:   map[string]string{"Authorization": "Bearer ***", "Proxy-Authorization": "Basic ***"},
		},
		{
			name:   "authorization without a scheme word is masked whole",
			header: http.Header{"Authorization": {secret}},
			want:   map[string]string{"Authorization": "***"},
		},
		{
			name:   "authorization whose first word is not a token is masked whole",
			header: http.Header{"Authorization": {"a=" + secret + ", b c"}},
			want:   map[string]string{"Authorization": "***"},
		},
		{
			name:   "cookies keep their names",
			header: http.Header{"Cookie": {"session=" + secret + "; theme=dark", "id=" + secret}, "Set-Cookie": {"sid=" + secret + "; Path=/; HttpOnly"}},
			want:   map[string]string{"Cookie": "session=***; theme=***; id=***", "Set-Cookie": "sid=***"},
		},
		{
			name:   "a cookie without a name is masked whole",
			header: http.Header{"Cookie": {secret}},
			want:   map[string]string{"Cookie": "***"},
		},
		{
			name: "names with secret words",
			header: http.Header{
				"X-Api-Key": {secret}, "Apikey": {secret}, "X-Auth-Token": {secret}, "Client-Secret": {secret},
				"X-Password": {secret}, "X-Amz-Security-Token": {secret}, "X-Forwarded-Authorization": {"Bearer " + secret},
				"Accept": {"text/html"},
			},
			want: map[string]string{
				"X-Api-Key": "***", "Apikey": "***", "X-Auth-Token": "***", "Client-Secret": "***",
				"X-Password": "***", "X-Amz-Security-Token": "***", "X-Forwarded-Authorization": "***",
				"Accept": "text/html",
			},
		},
		{
			name:   "configured names, any case",
			header: http.Header{"X-Internal-Sig": {secret}, "X-Tenant": {"acme"}},
			want:   map[string]string{"X-Internal-Sig": "***", "X-Tenant": "acme"},
		},
		{
			name: "query parameters",
			path: "/cb?code=1&access_token=" + secret + "&api_key=" + secret + "&x-internal-sig=" + secret + "&next=/home",
			want: map[string]string{"path": "/cb?code=1&access_token=***&api_key=***&x-internal-sig=***&next=/home"},
		},
		{
			name: "encoded and semicolon-separated parameter names",
			path: "/a?api%5Fkey=" + secret + ";Token=" + secret + "&pass+word=" + secret,
			want: map[string]string{"path": "/a?api%5Fkey=***;Token=***&pass+word=***"},
		},
		{
			name: "path parameters",
			path: "/app;jsessionid=" + secret + "?q=1",
			want: map[string]string{"path": "/app;jsessionid=***?q=1"},
		},
		{
			name:   "referer query and userinfo",
			header: http.Header{},
			want:   map[string]string{"referer": "https://***@app.example.com/p?token=***&q=1#top"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, logs := newObserver(t)
			if err := o.Configure(config.TelemetrySpec{AccessLog: "all", MaskHeaders: []string{"x-internal-SIG"}}); err != nil {
				t.Fatal(err)
			}
			path := tc.path
			if path == "" {
				path = "/"
			}
			o.Access(&observe.AccessRecord{
				Method: "GET", Path: path, Proto: "HTTP/1.1", Status: 200, Headers: tc.header,
				Referer: "https://user:" + secret + "@app.example.com/p?token=" + secret + "&q=1#top",
			})
			out := logs.String()
			if strings.Contains(out, secret) {
				t.Fatalf("the secret reached the log:\n%s", out)
			}
			recs := logs.events(t, "access")
			if len(recs) != 1 {
				t.Fatalf("logged %d records, want 1", len(recs))
			}
			h, _ := recs[0]["headers"].(map[string]any)
			for k, v := range tc.want {
				var got any
				switch k {
				case "path", "referer":
					got = recs[0][k]
				default:
					got = h[k]
				}
				if got != v {
					t.Errorf("%s logged as %#v, want %#v", k, got, v)
				}
			}
			if tc.path != "" && !strings.Contains(recs[0]["request"].(string), tc.want["path"]) {
				t.Errorf("request line %q does not carry the masked path", recs[0]["request"])
			}
		})
	}
}
