package proxy

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
)

// hijackable is a ResponseWriter of an HTTP/1 connection; wrapped one that
// only unwraps to it, as the core's recorder and the filters do.
type hijackable struct{ *httptest.ResponseRecorder }

func (hijackable) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, http.ErrNotSupported
}

type wrapped struct{ http.ResponseWriter }

func (w wrapped) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func TestUpgradeOffer(t *testing.T) {
	f, err := NewForwarder(&config.Forward{Upgrades: []string{"WebSocket", "x-echo"}}, nil, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	h1 := wrapped{hijackable{httptest.NewRecorder()}}
	cases := []struct {
		name string
		edit func(r *http.Request)
		w    http.ResponseWriter
		want string
	}{
		{name: "websocket", want: "websocket"},
		{name: "names are case-insensitive, versions kept", edit: func(r *http.Request) { r.Header.Set("Upgrade", "WEBSOCKET, x-echo/2") }, want: "WEBSOCKET, x-echo/2"},
		{name: "protocols not allowed dropped", edit: func(r *http.Request) { r.Header["Upgrade"] = []string{"h2c, websocket", "foo"} }, want: "websocket"},
		{name: "none allowed", edit: func(r *http.Request) { r.Header.Set("Upgrade", "h2c") }},
		{name: "Connection lists upgrade among others", edit: func(r *http.Request) { r.Header.Set("Connection", "keep-alive, UPGRADE") }, want: "websocket"},
		{name: "no Connection: upgrade", edit: func(r *http.Request) { r.Header.Del("Connection") }},
		{name: "POST", edit: func(r *http.Request) { r.Method = http.MethodPost }},
		{name: "with a body", edit: func(r *http.Request) { r.ContentLength = 3 }},
		{name: "chunked body", edit: func(r *http.Request) { r.ContentLength, r.TransferEncoding = -1, []string{"chunked"} }},
		{name: "HTTP/1.0", edit: func(r *http.Request) { r.ProtoMinor = 0 }},
		{name: "HTTP/2", edit: func(r *http.Request) { r.ProtoMajor, r.ProtoMinor = 2, 0 }},
		{name: "connection cannot be taken over", w: httptest.NewRecorder()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			if tc.edit != nil {
				tc.edit(r)
			}
			w := tc.w
			if w == nil {
				w = h1
			}
			if got := f.upgradeOffer(w, r); got != tc.want {
				t.Errorf("offer %q, want %q", got, tc.want)
			}
		})
	}
	plain, _ := NewForwarder(&config.Forward{}, nil, "", 0)
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	if plain.upgrades != nil || plain.upgradeOffer(h1, r) != "" {
		t.Error("a rule without upgrades offers one")
	}
}

func TestOffered(t *testing.T) {
	for _, tc := range []struct {
		offer, proto string
		want         bool
	}{
		{"websocket", "websocket", true},
		{"websocket", "WebSocket", true},
		{"WEBSOCKET, x-echo/2", "x-echo/3", true}, // names are compared, not versions
		{"websocket", "h2c", false},
		{"websocket", "", false},
		{"websocket, x-echo", "websocket, x-echo", false}, // a 101 names one protocol
	} {
		if got := offered(tc.offer, tc.proto); got != tc.want {
			t.Errorf("offered(%q, %q) = %v", tc.offer, tc.proto, got)
		}
	}
}
