package filter_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
)

func TestCheckHTTPSURL(t *testing.T) {
	for _, tc := range []struct {
		url     string
		wantErr string // "": accepted
	}{
		{url: "https://idp.example.com/.well-known/jwks.json"},
		{url: "https://203.0.113.7:8443/keys"},
		{url: "http://127.0.0.1:8080/jwks"},
		{url: "http://[::1]:8080/jwks"},
		{url: "http://[::ffff:127.0.0.1]/jwks"},
		{url: "http://localhost/jwks", wantErr: "must use https (plain http is allowed to loopback addresses only)"},
		{url: "http://10.0.0.1/jwks", wantErr: "must use https"},
		{url: "/jwks", wantErr: "must be an absolute https URL"},
		{url: "https:///jwks", wantErr: "must be an absolute https URL"},
		{url: "https://user:secret@idp.example.com/", wantErr: "must not carry user information"},
		{url: "ftp://idp.example.com/jwks", wantErr: `scheme "ftp" is not https`},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		err = filter.CheckHTTPSURL(u)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("CheckHTTPSURL(%s) = %v, want accepted", tc.url, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("CheckHTTPSURL(%s) = %v, want an error with %q", tc.url, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("CheckHTTPSURL(%s): the error %q repeats the password", tc.url, err)
		}
	}
}
