package jwks_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/gateway/edgetoken"
	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
	"github.com/portcullis/portcullis/gateway/filters/jwks"
)

// keyFile writes n new EC P-256 keys to a 0600 file and returns its path.
func keyFile(t testing.TB, n int) string {
	t.Helper()
	var data []byte
	for range n {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)
	}
	p := filepath.Join(t.TempDir(), "edge-keys.pem")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// serve sends one request through f and returns the recorder; a returned error
// is recorded as the core would answer it, with the headers the filter set.
func serve(t testing.TB, f filter.Filter, method string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	h := filter.Chain([]filter.Filter{f}, filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("the jwks filter passed the request on")
		return nil
	}))
	r := httptest.NewRequest(method, "http://edge.internal/.well-known/jwks.json", nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r); err != nil {
		var fe *filter.Error
		if !errors.As(err, &fe) {
			t.Fatalf("error %v is not a *filter.Error", err)
		}
		rec.Code = fe.Status
	}
	return rec
}

func TestServesTheKeySet(t *testing.T) {
	path := keyFile(t, 2)
	f := filtertest.MustBuild(t, "jwks", "keyFile: "+path+"\nmaxAge: 5m")
	signer, err := edgetoken.Load(path)
	if err != nil {
		t.Fatal(err)
	}

	get := serve(t, f, "GET", nil)
	if get.Code != 200 || !bytes.Equal(get.Body.Bytes(), signer.JWKS()) {
		t.Fatalf("GET: %d %s\nwant the signer's set %s", get.Code, get.Body, signer.JWKS())
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(get.Body.Bytes(), &doc); err != nil || len(doc.Keys) != 2 || doc.Keys[0]["kid"] != signer.KeyID() {
		t.Errorf("body %s (%v): want two keys, the signing key first", get.Body, err)
	}
	for k, want := range map[string]string{"Content-Type": "application/jwk-set+json", "Cache-Control": "public, max-age=300",
		"Content-Length": fmt.Sprint(get.Body.Len()), "X-Content-Type-Options": "nosniff"} {
		if got := get.Header().Get(k); got != want {
			t.Errorf("GET %s: %q, want %q", k, got, want)
		}
	}
	etag := get.Header().Get("Etag")
	if len(etag) < 10 || etag[0] != '"' {
		t.Errorf("ETag %q", etag)
	}

	head := serve(t, f, "HEAD", nil)
	if head.Code != 200 || head.Body.Len() != 0 || head.Header().Get("Content-Length") != get.Header().Get("Content-Length") ||
		head.Header().Get("Etag") != etag {
		t.Errorf("HEAD: %d, %d body bytes, headers %v", head.Code, head.Body.Len(), head.Header())
	}

	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		if rec := serve(t, f, "GET", map[string]string{"If-None-Match": inm}); rec.Code != 304 || rec.Body.Len() != 0 || rec.Header().Get("Etag") != etag {
			t.Errorf("If-None-Match %s: %d, %d body bytes", inm, rec.Code, rec.Body.Len())
		}
	}
	if rec := serve(t, f, "GET", map[string]string{"If-None-Match": `"stale"`}); rec.Code != 200 {
		t.Errorf("If-None-Match of another set: %d", rec.Code)
	}

	for _, m := range []string{"POST", "PUT", "DELETE", "OPTIONS"} {
		rec := serve(t, f, m, nil)
		if rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" || rec.Body.Len() != 0 {
			t.Errorf("%s: %d, Allow %q", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
}

func TestMaxAgeZero(t *testing.T) {
	f := filtertest.MustBuild(t, "jwks", "keyFile: "+keyFile(t, 1)+"\nmaxAge: 0s")
	if got := serve(t, f, "GET", nil).Header().Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control %q", got)
	}
	f = filtertest.MustBuild(t, "jwks", "keyFile: "+keyFile(t, 1))
	if got := serve(t, f, "GET", nil).Header().Get("Cache-Control"); got != "public, max-age=60" {
		t.Errorf("default Cache-Control %q", got)
	}
}

func TestRegistered(t *testing.T) { filtertest.Registered(t, jwks.Type) }

func TestConfigErrors(t *testing.T) {
	path := keyFile(t, 1)
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		cfg  string
		want []string
	}{
		{"ok", "keyFile: " + path, nil},
		{"no config", "", []string{"keyFile: required"}},
		{"unknown field", "keyFile: " + path + "\nmaxage: 1m", []string{fmt.Sprintf("filters.yaml:%d", filtertest.Line("jwks", 2)), "maxage"}},
		{"max age too long", "keyFile: " + path + "\nmaxAge: 2h", []string{"maxAge", "2h0m0s", "rotation"}},
		{"max age fraction", "keyFile: " + path + "\nmaxAge: 1500ms", []string{"maxAge", "whole seconds"}},
		{"missing file", "keyFile: " + filepath.Join(dir, "nope.pem"), []string{"keyFile", "nope.pem"}},
		{"directory", "keyFile: " + dir, []string{"keyFile", "not a regular file"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := filtertest.Build(t, "jwks", tt.cfg)
			filtertest.CheckError(t, err, tt.want)
		})
	}
}

// TestREADMEExamples keeps the README's examples honest: each must load and build,
// with the documented key file path pointing at a real key file.
func TestREADMEExamples(t *testing.T) {
	md, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	const documented = "/etc/portcullis/edge-keys.pem"
	if !bytes.Contains(md, []byte(documented)) {
		t.Fatalf("README.md does not name %s", documented)
	}
	dir := t.TempDir()
	md = bytes.ReplaceAll(md, []byte(documented), []byte(keyFile(t, 1)))
	if err := os.WriteFile(filepath.Join(dir, "README.md"), md, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	filtertest.READMEExample(t)
}
