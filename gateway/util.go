package gateway

import "github.com/goccy/go-yaml"

// yamlish renders a spec deterministically, for comparing listener specs.
func yamlish(v any) ([]byte, error) { return yaml.Marshal(v) }
