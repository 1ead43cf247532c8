package restbridge_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
)

func TestRegistered(t *testing.T) { filtertest.Registered(t, "restbridge") }

var upstreams = filtertest.WithBuild(func(b *filter.Build) {
	b.Upstreams = filtertest.Upstreams{"api": filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })}
})

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	proto := filepath.Join(dir, "svc.proto")
	if err := os.WriteFile(proto, []byte(`syntax = "proto3";
package demo;
import "google/api/annotations.proto";
message Req { string id = 1; }
message Resp { string id = 1; }
service Demo {
  rpc Get(Req) returns (Resp) { option (google.api.http) = {get: "/v1/items/{id}"}; }
  rpc Watch(Req) returns (stream Resp) { option (google.api.http) = {get: "/v1/items/{id}:watch"}; }
}
service Wild {
  rpc Get(Req) returns (Resp) { option (google.api.http) = {get: "/v1/*/items"}; }
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "protoFiles: [" + proto + "]\nservices: [demo.Demo]\n"
	for _, tc := range []struct {
		name string
		cfg  string
		want []string
	}{
		{"valid", base + "cluster: api\nhost: api.example.com:8443\npathPrefix: /api/v2\ntimeout: 5s\nrequestMetadata: [authorization, x-request-id]\nresponseHeaders: [x-request-id]\nmaxResponseBytes: 65536\nunmatched: next\njson: {useProtoNames: true, rejectUnknownFields: true}\n", nil},
		{"cluster missing", base, []string{"cluster: required"}},
		{"unknown cluster", base + "cluster: nope\n", []string{`cluster: no Cluster "nope"`}},
		{"bad host", base + "cluster: api\nhost: https://api.example.com/x\n", []string{"host:"}},
		{"bad prefix", base + "cluster: api\npathPrefix: api\n", []string{"pathPrefix:"}},
		{"bad timeout", base + "cluster: api\ntimeout: 1h\n", []string{"timeout: 1h0m0s is outside"}},
		{"reserved metadata", base + "cluster: api\nrequestMetadata: [grpc-timeout, Host, 'a b']\n", []string{"requestMetadata[0]", "requestMetadata[1]", "requestMetadata[2]"}},
		{"reserved response header", base + "cluster: api\nresponseHeaders: [grpc-status, content-type]\n", []string{"responseHeaders[0]", "responseHeaders[1]"}},
		{"bad unmatched", base + "cluster: api\nunmatched: drop\n", []string{`unmatched: "drop"`}},
		{"bad response limit", base + "cluster: api\nmaxResponseBytes: 0\n", []string{"maxResponseBytes: 0 is outside"}},
		{"no source", "services: [demo.Demo]\ncluster: api\n", []string{"protoFiles: give protoFiles or descriptorSetFile"}},
		{"no reflection here", base + "cluster: api\nreflection: {}\n", []string{"reflection"}},
		{"unknown service", "protoFiles: [" + proto + "]\nservices: [demo.Nope]\ncluster: api\n", []string{"services[0]", "demo.Nope"}},
		{"wildcard outside a variable", "protoFiles: [" + proto + "]\nservices: [demo.Wild]\ncluster: api\n", []string{"wildcard outside a variable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := filtertest.Build(t, "restbridge", tc.cfg, filtertest.WithClusters("api"), upstreams)
			filtertest.CheckError(t, err, tc.want)
		})
	}
}

func TestREADMEExample(t *testing.T) {
	filtertest.READMEExample(t, filtertest.WithClusters("books-api"), filtertest.WithBuild(func(b *filter.Build) {
		b.Upstreams = filtertest.Upstreams{"books-api": filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })}
	}))
}
