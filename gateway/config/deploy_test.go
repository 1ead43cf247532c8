package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/gateway/config"
)

// TestKubernetesManifestConfig parses the Portcullis config embedded in the
// ConfigMaps of deploy/kubernetes, so the manifests cannot drift from the format.
func TestKubernetesManifestConfig(t *testing.T) {
	files, _ := filepath.Glob("../../deploy/kubernetes/*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests found")
	}
	found := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A block scalar "<name>.yaml: |" in a ConfigMap, indented by four spaces.
		lines := strings.Split(string(data), "\n")
		for i := 0; i < len(lines); i++ {
			if !strings.HasSuffix(lines[i], ".yaml: |") {
				continue
			}
			var b strings.Builder
			for i++; i < len(lines) && (strings.HasPrefix(lines[i], "    ") || lines[i] == ""); i++ {
				b.WriteString(strings.TrimPrefix(lines[i], "    ") + "\n")
			}
			found++
			if _, err := config.Parse(f, []byte(b.String())); err != nil {
				t.Errorf("%s: embedded config: %v", f, err)
			}
		}
	}
	if found == 0 {
		t.Fatal("no embedded config found in the manifests")
	}
}
