package transcode_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
)

func TestRegistered(t *testing.T) { filtertest.Registered(t, "transcode") }

// upstreams gives the factory a "grpc" cluster; the config tests never call it.
var upstreams = filtertest.WithBuild(func(b *filter.Build) {
	b.Upstreams = filtertest.Upstreams{"grpc": filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })}
})

func TestConfigErrors(t *testing.T) {
	set, rules := writeHealthFiles(t)
	dir := t.TempDir()
	proto := filepath.Join(dir, "svc.proto")
	if err := os.WriteFile(proto, []byte(`syntax = "proto3";
package demo;
import "google/api/annotations.proto";
message Req { string id = 1; repeated string ids = 2; }
message Resp { string id = 1; }
service Demo {
  rpc Get(Req) returns (Resp) { option (google.api.http) = {get: "/v1/items/{id}"}; }
  rpc Bad(Req) returns (Resp) { option (google.api.http) = {get: "/v1/bad/{ids}"}; }
  rpc Plain(Req) returns (Resp);
}
service Good {
  rpc Get(Req) returns (Resp) { option (google.api.http) = {get: "/v1/good/{id}"}; }
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.proto")
	if err := os.WriteFile(broken, []byte("syntax = \"proto3\";\nmessage {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badRules := filepath.Join(dir, "bad-rules.yaml")
	if err := os.WriteFile(badRules, []byte("http:\n  rules:\n    - selector: grpc.health.v1.Health.Check\n      get: /v1/x\n      bodyy: '*'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "descriptorSetFile: " + set + "\nhttpRulesFile: " + rules + "\nservices: [grpc.health.v1.Health]\n"
	tests := []struct {
		name string
		cfg  string
		want []string
	}{
		{"valid descriptor set and rules", base + "cluster: grpc\n", nil},
		{"valid proto file", "protoFiles: [" + proto + "]\nservices: [demo.Good]\ncluster: grpc\nrequestHeaders: [x-user]\nresponseMetadata: [x-request-id]\ntimeout: 5s\nunmatched: next\njson: {useProtoNames: true, omitUnpopulated: true}\n", nil},
		{"cluster missing", base, []string{"cluster: required"}},
		{"unknown cluster", base + "cluster: nope\n", []string{`cluster: no Cluster "nope"`}},
		{"no source", "services: [a.B]\ncluster: grpc\n", []string{"protoFiles: give protoFiles, descriptorSetFile or reflection"}},
		{"both sources", "protoFiles: [" + proto + "]\ndescriptorSetFile: " + set + "\nservices: [a.B]\ncluster: grpc\n", []string{"not several"}},
		{"reflection and a file", "descriptorSetFile: " + set + "\nreflection: {}\nservices: [a.B]\ncluster: grpc\n", []string{"not several"}},
		{"valid reflection", "reflection: {refreshInterval: 30s}\nhttpRulesFile: " + rules + "\nservices: [grpc.health.v1.Health]\ncluster: grpc\n", nil},
		{"reflection interval too short", "reflection: {refreshInterval: 10ms}\nservices: [a.B]\ncluster: grpc\n", []string{"reflection.refreshInterval: 10ms is outside"}},
		{"reflection with import paths", "reflection: {}\nimportPaths: [" + dir + "]\nservices: [a.B]\ncluster: grpc\n", []string{"importPaths: only meaningful"}},
		{"reflection unknown field", "reflection: {interval: 5m}\nservices: [a.B]\ncluster: grpc\n", []string{"interval"}},
		{"no services", "descriptorSetFile: " + set + "\ncluster: grpc\n", []string{"services: name at least one"}},
		{"unknown service", "descriptorSetFile: " + set + "\nservices: [nope.Svc]\ncluster: grpc\n", []string{"services[0]", "nope.Svc", "grpc.health.v1.Health"}},
		{"service without rules", "descriptorSetFile: " + set + "\nservices: [grpc.health.v1.Health]\ncluster: grpc\n", []string{"no method of the exposed services has an HTTP rule"}},
		{"repeated path variable", "protoFiles: [" + proto + "]\nservices: [demo.Demo]\ncluster: grpc\n", []string{"demo.Demo.Bad", "repeated field cannot be bound"}},
		{"proto does not compile", "protoFiles: [" + broken + "]\nservices: [a.B]\ncluster: grpc\n", []string{"protoFiles:", "broken.proto"}},
		{"missing descriptor set", "descriptorSetFile: " + filepath.Join(dir, "none.binpb") + "\nservices: [a.B]\ncluster: grpc\n", []string{"descriptorSetFile:", "none.binpb"}},
		{"bad rule file", "descriptorSetFile: " + set + "\nhttpRulesFile: " + badRules + "\nservices: [grpc.health.v1.Health]\ncluster: grpc\n", []string{"httpRulesFile:", "bodyy"}},
		{"bad unmatched", base + "cluster: grpc\nunmatched: drop\n", []string{`unmatched: "drop"`}},
		{"bad body limit", base + "cluster: grpc\nmaxBodyBytes: 0\n", []string{"maxBodyBytes: 0 is outside"}},
		{"bad timeout", base + "cluster: grpc\ntimeout: 1h\n", []string{"timeout: 1h0m0s is outside"}},
		{"reserved request header", base + "cluster: grpc\nrequestHeaders: [Content-Type, grpc-timeout, 'bad header']\n", []string{"requestHeaders[0]", "requestHeaders[1]", "requestHeaders[2]"}},
		{"unknown field", base + "cluster: grpc\nprotofiles: [x]\n", []string{"protofiles"}},
		{"importPaths without protoFiles", base + "cluster: grpc\nimportPaths: [" + dir + "]\n", []string{"importPaths: only meaningful with protoFiles"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := filtertest.Build(t, "transcode", tc.cfg, filtertest.WithClusters("grpc"), upstreams, closeBuilt)
			filtertest.CheckError(t, err, tc.want)
		})
	}
}

// closeBuilt stops the reflection refresher of a filter the test built.
var closeBuilt = filtertest.WithBuilt(func(t testing.TB, f filter.Filter) {
	if c, ok := f.(io.Closer); ok {
		t.Cleanup(func() { c.Close() })
	}
})

func TestREADMEExample(t *testing.T) {
	// The README's example names files under testdata/.
	filtertest.READMEExample(t, filtertest.WithClusters("library"), filtertest.WithBuild(func(b *filter.Build) {
		b.Upstreams = filtertest.Upstreams{"library": filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })}
	}))
}
