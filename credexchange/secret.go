// Package credexchange turns an internal caller into the external credential the
// egress sends on its behalf, so that services never hold external secrets: static
// secrets read from files (API keys, bearer tokens, basic-auth pairs), OAuth 2.0
// client-credentials tokens (RFC 6749 §4.4) and RFC 8693 token exchange, with the
// tokens cached until shortly before they expire and fetched once for any number
// of concurrent requests.
//
// Secrets are carried as Secret values, which print, log and marshal as
// "[redacted]"; errors this package returns never contain one, nor a token
// endpoint's response body.
//
// It is not for: deciding which caller gets which credential or rewriting
// requests (the egress filter gateway/filters/credexchange does that), nor
// authenticating callers (the mesh's mTLS and the jwt filter do).
package credexchange

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Secret is a credential value. It shows itself only through Reveal: fmt, slog,
// encoding/json and encoding/text all see "[redacted]".
type Secret struct{ v string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the secret itself, for the one place that must send it.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

const redacted = "[redacted]"

func (s Secret) String() string                { return redacted }
func (s Secret) GoString() string              { return redacted }
func (s Secret) LogValue() slog.Value          { return slog.StringValue(redacted) }
func (s Secret) MarshalText() ([]byte, error)  { return []byte(redacted), nil }
func (s Secret) Format(f fmt.State, verb rune) { _, _ = io.WriteString(f, redacted) }

var (
	_ fmt.Formatter  = Secret{}
	_ slog.LogValuer = Secret{}
)

// MaxSecretFileSize bounds a secret file: a credential is a line, not a document.
const MaxSecretFileSize = 16 << 10

// SecretFile is a secret read from a file.
type SecretFile struct {
	Path   string
	Secret Secret
	// Exposed is true when the file's group or others may read it; the caller
	// should warn (the file should be 0600 or 0400).
	Exposed bool
}

// ReadSecretFile reads a secret from path: the file's contents without trailing
// whitespace (the newline editors add). An empty file, one larger than
// MaxSecretFileSize, or one with control characters (which could split a header
// line) is an error; the error names the file, never its contents.
func ReadSecretFile(path string) (SecretFile, error) {
	if path == "" {
		return SecretFile{}, errors.New("no file named")
	}
	f, err := os.Open(path)
	if err != nil {
		return SecretFile{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return SecretFile{}, err
	}
	if !fi.Mode().IsRegular() {
		return SecretFile{}, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretFileSize+1))
	if err != nil {
		return SecretFile{}, err
	}
	if len(b) > MaxSecretFileSize {
		return SecretFile{}, fmt.Errorf("%s is larger than %d bytes", path, MaxSecretFileSize)
	}
	v := strings.TrimRight(string(b), " \t\r\n")
	if v == "" {
		return SecretFile{}, fmt.Errorf("%s is empty", path)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return SecretFile{}, fmt.Errorf("%s contains control characters (a credential must fit in one header line)", path)
		}
	}
	return SecretFile{Path: path, Secret: NewSecret(v), Exposed: fi.Mode().Perm()&0o077 != 0}, nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
