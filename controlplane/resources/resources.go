// Package resources is how the control plane keeps config resources in its store:
// one key per resource ("resources/<Kind>/<namespace>/<name>") holding the
// resource's canonical YAML document, and an Index that follows the store and
// hands the push server and the admin API a consistent view of all of them.
//
// Resources are the same Kubernetes-style kinds proxies read from files, decoded and
// validated by gateway/config: one code path, so a resource the control plane
// stores is one a proxy can parse.
//
// It is not for: authorization (the admin API's) or scoping config per proxy (the
// push server's).
package resources

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/portcullis/portcullis/gateway/config"
)

// Prefix is the store prefix under which resources live.
const Prefix = "resources/"

// Key is the store key of one resource.
func Key(kind, namespace, name string) string {
	return Prefix + kind + "/" + namespace + "/" + name
}

// KindPrefix is the store prefix of every resource of one kind (and, when namespace
// is not empty, of one namespace).
func KindPrefix(kind, namespace string) string {
	if kind == "" {
		return Prefix
	}
	if namespace == "" {
		return Prefix + kind + "/"
	}
	return Prefix + kind + "/" + namespace + "/"
}

// ParseKey splits a store key made by Key.
func ParseKey(key string) (kind, namespace, name string, ok bool) {
	rest, found := strings.CutPrefix(key, Prefix)
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// Resource is one stored resource.
type Resource struct {
	Kind      string
	Namespace string
	Name      string
	// Version is the store revision of the resource's last write (its
	// resourceVersion, as a decimal string on the wire).
	Version int64
	// YAML is the canonical document, without metadata.resourceVersion.
	YAML []byte
}

// Ref is "Kind namespace/name", the form config errors use.
func (r Resource) Ref() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// Digest is the hex SHA-256 of the canonical YAML (for audit records).
func (r Resource) Digest() string { return Digest(r.YAML) }

// Digest is the hex SHA-256 of b, or "" for no bytes.
func Digest(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// FormatVersion renders a resource version for the wire and for metadata.
func FormatVersion(v int64) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatInt(v, 10)
}

// ParseVersion reads a resourceVersion; "" is 0 (none given).
func ParseVersion(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("metadata.resourceVersion %q is not a version this control plane issued", s)
	}
	return v, nil
}

// Canonical writes one document in the form the store keeps.
func Canonical(d config.Document) ([]byte, error) {
	b, err := yaml.MarshalWithOptions(d, yaml.Indent(2), yaml.IndentSequence(true))
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: encoding: %w", d.Kind, d.Metadata.Namespace, d.Metadata.Name, err)
	}
	return b, nil
}

// Join concatenates documents into one multi-document YAML stream.
func Join(docs [][]byte) []byte {
	var b bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(d)
		if len(d) > 0 && d[len(d)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}
