package grpcweb

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portcullis/portcullis/translate"
)

func TestRequestMode(t *testing.T) {
	for _, tc := range []struct {
		ct    string
		mode  Mode
		codec string
		ok    bool
	}{
		{"application/grpc-web", Binary, "", true},
		{"application/grpc-web+proto", Binary, "+proto", true},
		{"Application/GRPC-Web+Proto; charset=utf-8", Binary, "+proto", true},
		{"application/grpc-web-text", Text, "", true},
		{"application/grpc-web-text+proto", Text, "+proto", true},
		{"application/grpc-web+json", Binary, "+json", true},
		{"application/grpc", 0, "", false},
		{"application/grpc-webfoo", 0, "", false},
		{"application/grpc-web+", 0, "", false},
		{"application/json", 0, "", false},
		{"", 0, "", false},
	} {
		mode, codec, ok := RequestMode(tc.ct)
		if mode != tc.mode || codec != tc.codec || ok != tc.ok {
			t.Errorf("RequestMode(%q) = %v %q %v, want %v %q %v", tc.ct, mode, codec, ok, tc.mode, tc.codec, tc.ok)
		}
	}
}

// chunkedBase64 encodes data as base64 chunks cut at the given sizes, each
// padded on its own, as a client that encodes message by message sends them.
func chunkedBase64(data []byte, cuts []int) string {
	var b strings.Builder
	for _, c := range cuts {
		if c <= 0 || len(data) == 0 {
			continue
		}
		c = min(c, len(data))
		b.WriteString(base64.StdEncoding.EncodeToString(data[:c]))
		data = data[c:]
	}
	b.WriteString(base64.StdEncoding.EncodeToString(data))
	return b.String()
}

func TestBase64StreamChunks(t *testing.T) {
	data := []byte("the quick brown fox jumps over the lazy dog, twice over")
	for _, cuts := range [][]int{nil, {1}, {2}, {3}, {1, 1, 1}, {5, 2, 7}, {54}, {100}} {
		enc := chunkedBase64(data, cuts)
		for _, oneByte := range []bool{false, true} {
			var src io.Reader = strings.NewReader(enc + "\r\n")
			if oneByte {
				src = iotest.OneByteReader(src)
			}
			got, err := io.ReadAll(&base64Stream{src: src})
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("cuts %v (one byte reads %v): %q, %v; want the data back", cuts, oneByte, got, err)
			}
		}
	}
	for _, bad := range []string{"AAA", "AA!A", "A===", "AAAAA"} {
		if _, err := io.ReadAll(&base64Stream{src: strings.NewReader(bad)}); err == nil {
			t.Errorf("%q decoded without an error", bad)
		}
	}
}

// FuzzBase64Stream checks the stream against decoding the same chunks one by
// one: any cut of any data must come back whole.
func FuzzBase64Stream(f *testing.F) {
	f.Add([]byte("hello"), uint8(1), uint8(2))
	f.Add([]byte{0, 0, 0, 0, 3, 1, 2, 3}, uint8(5), uint8(0))
	f.Add([]byte{}, uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, a, b uint8) {
		enc := chunkedBase64(data, []int{int(a), int(b)})
		got, err := io.ReadAll(&base64Stream{src: iotest.HalfReader(strings.NewReader(enc))})
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%q: got %q, %v", enc, got, err)
		}
	})
}

func TestEncodeGRPCMessage(t *testing.T) {
	for in, want := range map[string]string{
		"plain":          "plain",
		"100% done":      "100%25 done",
		"line\nbreak":    "line%0Abreak",
		"caf\u00e9":      "caf%C3%A9",
		"":               "",
		"tab\tand space": "tab%09and space",
	} {
		if got := translate.EncodeGRPCMessage(in); got != want {
			t.Errorf("encodeGRPCMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

// invokerFunc is a stand-in for the upstream handler, for answers a real
// service does not give.
type invokerFunc func(w http.ResponseWriter, r *http.Request) error

func (f invokerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

func frame(flag byte, payload string) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{flag}, uint32(len(payload))), payload...)
}

func serve(t *testing.T, inv invokerFunc) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/pkg.Svc/Method", bytes.NewReader(frame(0, "req")))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	rec := httptest.NewRecorder()
	New(Options{}).Serve(rec, req, inv)
	return rec
}

func TestUpstreamFailures(t *testing.T) {
	grpcOK := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(http.StatusOK)
	}
	for _, tc := range []struct {
		name string
		inv  invokerFunc
		// want: the status, and whether it came trailers-only or after messages.
		code         codes.Code
		trailersOnly bool
		body         string // the frames before the trailer frame
	}{
		{"no response", func(w http.ResponseWriter, r *http.Request) error {
			return status.Error(codes.Unavailable, "upstream: no_healthy_upstream")
		}, codes.Unavailable, true, ""},
		{"an HTML error page", func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<h1>bad gateway</h1>"))
			return nil
		}, codes.Unavailable, true, ""},
		{"no grpc-status", func(w http.ResponseWriter, r *http.Request) error {
			grpcOK(w)
			w.Write(frame(0, "one"))
			return nil
		}, codes.Internal, false, string(frame(0, "one"))},
		{"last message cut short", func(w http.ResponseWriter, r *http.Request) error {
			grpcOK(w)
			w.Write(frame(0, "one"))
			w.Write(frame(0, "two")[:6])
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
			return nil
		}, codes.Internal, false, string(frame(0, "one"))},
		{"stream broke after a message", func(w http.ResponseWriter, r *http.Request) error {
			grpcOK(w)
			w.Write(frame(0, "one"))
			return status.Error(codes.Unavailable, "upstream: upstream_reset")
		}, codes.Unavailable, false, string(frame(0, "one"))},
		{"a message split across writes", func(w http.ResponseWriter, r *http.Request) error {
			grpcOK(w)
			f := frame(0, "split")
			w.Write(f[:3])
			w.Write(f[3:])
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
			return nil
		}, codes.OK, false, string(frame(0, "split"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(t, tc.inv)
			if rec.Code != http.StatusOK {
				t.Fatalf("HTTP %d, want 200", rec.Code)
			}
			body := rec.Body.String()
			if tc.trailersOnly {
				if got := rec.Header().Get("Grpc-Status"); got != itoa(tc.code) || body != "" {
					t.Fatalf("grpc-status header %q, body %q; want trailers-only %d", got, body, tc.code)
				}
				return
			}
			if !strings.HasPrefix(body, tc.body) {
				t.Fatalf("body %q does not start with the messages %q", body, tc.body)
			}
			tr := body[len(tc.body):]
			if len(tr) < 5 || tr[0] != 0x80 || int(binary.BigEndian.Uint32([]byte(tr[1:5]))) != len(tr)-5 {
				t.Fatalf("no single trailer frame after the messages: %q", tr)
			}
			if want := "grpc-status: " + itoa(tc.code) + "\r\n"; !strings.HasPrefix(tr[5:], want) {
				t.Fatalf("trailers %q, want them to start with %q", tr[5:], want)
			}
		})
	}
}

func itoa(c codes.Code) string { return strconv.Itoa(int(c)) }
