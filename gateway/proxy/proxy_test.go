package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/transport"
)

func TestCopyRequestHeader(t *testing.T) {
	in := http.Header{
		"Connection":        {"keep-alive, X-Custom-Hop"},
		"X-Custom-Hop":      {"1"},
		"Keep-Alive":        {"timeout=5"},
		"Te":                {"trailers, deflate"},
		"Upgrade":           {"websocket"},
		"X-Forwarded-For":   {"10.0.0.9"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=10.0.0.9"},
		"Accept":            {"*/*"},
	}
	peer := netip.MustParseAddr("192.0.2.7")
	t.Run("untrusted peer", func(t *testing.T) {
		out := copyRequestHeader(in, &Forwarding{PeerIP: peer, Scheme: "http", Host: "api.example.com"}, 0)
		want := http.Header{
			"Accept":            {"*/*"},
			"Te":                {"trailers"},
			"X-Forwarded-For":   {"192.0.2.7"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"api.example.com"},
		}
		assertHeader(t, out, want)
	})
	t.Run("trusted peer keeps the chain", func(t *testing.T) {
		out := copyRequestHeader(in, &Forwarding{PeerIP: peer, TrustedPeer: true, Scheme: "http", Host: "h"}, 0)
		if got := out.Get("X-Forwarded-For"); got != "10.0.0.9, 192.0.2.7" {
			t.Errorf("X-Forwarded-For %q", got)
		}
		if got := out.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("X-Forwarded-Proto %q: a trusted proxy's value must be kept", got)
		}
		if out.Get("Forwarded") == "" {
			t.Error("Forwarded from a trusted proxy was dropped")
		}
	})
	if in.Get("X-Custom-Hop") != "1" || len(in["X-Forwarded-For"]) != 1 {
		t.Fatal("the inbound header was modified")
	}
}

func assertHeader(t *testing.T, got, want http.Header) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("header %v, want %v", got, want)
	}
	for k, v := range want {
		if g := got[k]; len(g) != len(v) || len(v) > 0 && g[0] != v[0] {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
}

func TestClientIPFrom(t *testing.T) {
	trusted := func(a netip.Addr) bool { return netip.MustParsePrefix("10.0.0.0/8").Contains(a) }
	cases := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer is the client", "192.0.2.1", []string{"6.6.6.6"}, "192.0.2.1"},
		{"trusted peer: right-most untrusted", "10.0.0.1", []string{"6.6.6.6, 198.51.100.4, 10.0.0.2"}, "198.51.100.4"},
		{"several header lines", "10.0.0.1", []string{"6.6.6.6", "198.51.100.4"}, "198.51.100.4"},
		{"garbage stops the walk", "10.0.0.1", []string{"198.51.100.4, junk, 10.0.0.3"}, "10.0.0.3"},
		{"all trusted", "10.0.0.1", []string{"10.0.0.5"}, "10.0.0.5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ClientIPFrom(netip.MustParseAddr(c.peer), http.Header{"X-Forwarded-For": c.xff}, trusted)
			if got.String() != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestRetryDecisions(t *testing.T) {
	two := 2
	p := newRetryPolicy(&config.RetryPolicy{Attempts: two})
	get, _ := http.NewRequest("GET", "http://x/", nil)
	post, _ := http.NewRequest("POST", "http://x/", nil)
	r503 := &http.Response{StatusCode: 503}
	r500 := &http.Response{StatusCode: 500}
	cases := []struct {
		name    string
		c       condition
		resp    *http.Response
		req     *http.Request
		attempt int
		body    bool
		want    bool
	}{
		{"gateway error on GET", condGateway, r503, get, 0, false, true},
		{"attempts used up", condGateway, r503, get, 2, false, false},
		{"plain 500 is not in the default set", cond5xx, r500, get, 0, false, false},
		{"POST is not retried after it may have been seen", condGateway, r503, post, 0, false, false},
		{"POST is retried when nothing was sent", condConnect, nil, post, 0, true, true},
		{"a body already sent is not sent again", condReset, nil, get, 0, true, false},
		{"per-try timeout is retried like a gateway error", condTimeout, nil, get, 0, false, true},
		{"success is not retried", condOK, &http.Response{StatusCode: 200}, get, 0, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := p.shouldRetry(c.c, c.resp, c.req, c.attempt, c.body); got != c.want {
				t.Errorf("shouldRetry = %v, want %v", got, c.want)
			}
		})
	}
	statuses := newRetryPolicy(&config.RetryPolicy{Attempts: 1, On: []string{config.RetryOnStatus}, Statuses: []int{429}})
	if !statuses.shouldRetry(condOK, &http.Response{StatusCode: 429}, get, 0, false) {
		t.Error("a listed status is not retried")
	}
}

func TestClassify(t *testing.T) {
	bg := context.Background()
	expired, cancel := context.WithDeadline(bg, time.Now().Add(-time.Second))
	defer cancel()
	gone, cancel2 := context.WithCancel(bg)
	cancel2()
	cases := []struct {
		name            string
		resp            *http.Response
		err             error
		client, overall context.Context
		want            condition
	}{
		{"ok", &http.Response{StatusCode: 404}, nil, bg, bg, condOK},
		{"503", &http.Response{StatusCode: 503}, nil, bg, bg, condGateway},
		{"501", &http.Response{StatusCode: 501}, nil, bg, bg, cond5xx},
		{"connect", nil, &transport.ConnectError{Err: errors.New("refused")}, bg, bg, condConnect},
		{"connect timeout is still nothing sent", nil, &transport.ConnectError{Err: context.DeadlineExceeded}, bg, bg, condConnect},
		{"overflow", nil, transport.ErrConnLimit, bg, bg, condOverflow},
		{"per-try timeout", nil, context.DeadlineExceeded, bg, bg, condTimeout},
		{"overall deadline explains a reset", nil, errors.New("stream reset"), bg, expired, condTimeout},
		{"client gone", nil, errors.New("x"), gone, bg, condClientGone},
		{"reset", nil, errors.New("connection reset"), bg, bg, condReset},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := classify(c.resp, c.err, c.client, c.overall); got != c.want {
				t.Errorf("classify = %v, want %v", got, c.want)
			}
		})
	}
}

func TestJoinPathAndGRPCTimeout(t *testing.T) {
	for _, c := range []struct{ prefix, rest, want string }{
		{"/", "/x", "/x"}, {"/api/v1", "/x", "/api/v1/x"}, {"/api/", "x", "/api/x"},
		{"", "", "/"}, {"/new", "", "/new"}, {"/a", "b", "/a/b"},
	} {
		if got := joinPath(c.prefix, c.rest); got != c.want {
			t.Errorf("joinPath(%q, %q) = %q, want %q", c.prefix, c.rest, got, c.want)
		}
	}
}
