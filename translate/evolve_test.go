package translate_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/portcullis/portcullis/translate"
	"github.com/portcullis/portcullis/translate/descriptors"
)

// compileService compiles a proto holding service demo.Svc.
func compileService(t *testing.T, src string) protoreflect.ServiceDescriptor {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "svc.proto"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := descriptors.CompileProtoFiles(context.Background(), []string{"svc.proto"}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	sd, err := set.Service("demo.Svc")
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

const evolveHeader = `syntax = "proto3";
package demo;
import "google/api/annotations.proto";
message Out { string v = 1; }
`

const evolveBase = evolveHeader + `message In { string name = 1; Out item = 2; int32 n = 3; }
service Svc {
  rpc Get(In) returns (Out) { option (google.api.http) = {get: "/v1/{name=items/*}"}; }
  rpc Put(In) returns (Out) { option (google.api.http) = {put: "/v1/{name=items/*}" body: "item"}; }
  rpc Count(In) returns (Out) { option (google.api.http) = {get: "/v1/count/{n}"}; }
}
`

func TestEvolve(t *testing.T) {
	prev, change, err := translate.Evolve(nil, []protoreflect.ServiceDescriptor{compileService(t, evolveBase)}, nil, translate.Options{})
	if err != nil || len(change.Added) != 3 || change.Breaking() {
		t.Fatalf("first compile: %+v, %v", change, err)
	}
	for _, tc := range []struct {
		name                             string
		next                             string
		added, removed, retained, failed []string // substrings, one per entry
		servedFromPrev                   string   // a selector whose route must keep prev's descriptors
		wantErr                          string
	}{
		{name: "unchanged", next: evolveBase},
		{name: "method added", next: strings.Replace(evolveBase, "service Svc {", `service Svc {
  rpc List(In) returns (Out) { option (google.api.http) = {get: "/v1/items"}; }`, 1), added: []string{"demo.Svc.List"}},
		{name: "method removed", next: strings.Replace(evolveBase, `  rpc Count(In) returns (Out) { option (google.api.http) = {get: "/v1/count/{n}"}; }
`, "", 1), removed: []string{"demo.Svc.Count"}},
		{name: "binding removed, method kept", next: strings.Replace(evolveBase, `{get: "/v1/count/{n}"}`, `{get: "/v2/count/{n}"}`, 1),
			added: []string{"/v2/count"}, removed: []string{"/v1/count"}},
		{name: "path field removed", next: strings.Replace(evolveBase, "string name = 1;", "string id = 4;", 1),
			retained: []string{"demo.Svc.Get", "demo.Svc.Put"}, servedFromPrev: "demo.Svc.Get"},
		{name: "path field retyped", next: strings.Replace(evolveBase, "int32 n = 3;", "int64 n = 3;", 1),
			retained: []string{"demo.Svc.Count): path variable {n}: field n was int32, now int64"}, servedFromPrev: "demo.Svc.Count"},
		{name: "path field renumbered", next: strings.Replace(evolveBase, "string name = 1;", "string name = 9;", 1),
			retained: []string{"number 1, now 9", "number 1, now 9"}, servedFromPrev: "demo.Svc.Put"},
		{name: "body field retyped", next: strings.Replace(evolveBase, "Out item = 2;", "In item = 2;", 1),
			retained: []string{"body item: field item was demo.Out, now demo.In"}, servedFromPrev: "demo.Svc.Put"},
		{name: "new binding does not compile", next: strings.Replace(evolveBase, "service Svc {", `service Svc {
  rpc Bad(In) returns (Out) { option (google.api.http) = {get: "/v1/bad/{missing}"}; }`, 1), failed: []string{"demo.Svc.Bad"}},
		{name: "nothing left", next: evolveHeader + "message In { string name = 1; }\nservice Svc { rpc Get(In) returns (Out); }\n",
			removed: []string{"Get", "Put", "Count"}, wantErr: "no method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, change, err := translate.Evolve(prev, []protoreflect.ServiceDescriptor{compileService(t, tc.next)}, nil, translate.Options{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range []struct {
				name      string
				got, want []string
			}{{"added", change.Added, tc.added}, {"removed", change.Removed, tc.removed},
				{"retained", change.Retained, tc.retained}, {"failed", change.Failed, tc.failed}} {
				if len(l.got) != len(l.want) {
					t.Errorf("%s = %q, want %d entries like %q", l.name, l.got, len(l.want), l.want)
					continue
				}
				for i := range l.want {
					if !strings.Contains(l.got[i], l.want[i]) {
						t.Errorf("%s[%d] = %q, want it to mention %q", l.name, i, l.got[i], l.want[i])
					}
				}
			}
			if change.Breaking() != (len(tc.removed)+len(tc.retained) > 0) {
				t.Errorf("Breaking() = %v", change.Breaking())
			}
			if tc.servedFromPrev == "" {
				return
			}
			for _, r := range next.Routes() {
				if string(r.Method.FullName()) != tc.servedFromPrev {
					continue
				}
				for _, old := range prev.Routes() {
					if old.Binding.String() == r.Binding.String() && old.Method != r.Method {
						t.Errorf("%s is served with the new descriptors, want the previous ones", r.Binding)
					}
				}
				return
			}
			t.Errorf("%s is not served at all", tc.servedFromPrev)
		})
	}
}
