package grpcweb_test

import (
	"net/http"
	"testing"

	"github.com/portcullis/portcullis/gateway/filter"
	"github.com/portcullis/portcullis/gateway/filter/filtertest"
)

func TestRegistered(t *testing.T) { filtertest.Registered(t, "grpcweb") }

func TestConfigErrors(t *testing.T) {
	upstreams := filtertest.WithBuild(func(b *filter.Build) {
		b.Upstreams = filtertest.Upstreams{"grpc": filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })}
	})
	for _, tc := range []struct {
		name string
		cfg  string
		want []string
	}{
		{"valid", "cluster: grpc\nmaxRequestBytes: 65536\n", nil},
		{"cluster missing", "maxRequestBytes: 10\n", []string{"cluster: required"}},
		{"unknown cluster", "cluster: nope\n", []string{`cluster: no Cluster "nope"`}},
		{"limit too small", "cluster: grpc\nmaxRequestBytes: 0\n", []string{"maxRequestBytes: 0 is outside"}},
		{"limit too large", "cluster: grpc\nmaxRequestBytes: 1073741824\n", []string{"maxRequestBytes: 1073741824 is outside"}},
		{"unknown field", "cluster: grpc\ncors: true\n", []string{"cors"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := filtertest.Build(t, "grpcweb", tc.cfg, filtertest.WithClusters("grpc"), upstreams)
			filtertest.CheckError(t, err, tc.want)
		})
	}
}

func TestREADMEExample(t *testing.T) {
	filtertest.READMEExample(t, filtertest.WithClusters("library"), filtertest.WithBuild(func(b *filter.Build) {
		b.Upstreams = filtertest.Upstreams{"library": filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })}
	}))
}
