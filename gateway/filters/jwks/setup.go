package jwks

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/edgetoken"
	"github.com/portcullis/portcullis/gateway/filter"
)

// Type is the name under which the filter is registered ("type: jwks" in a Route rule).
const Type = "jwks"

func init() { filter.Register(Type, Factory) }

// Defaults and bounds of the config.
const (
	DefaultMaxAge = time.Minute
	MaxMaxAge     = time.Hour
)

// Config is the filter's config as written in a Route rule.
type Config struct {
	// KeyFile is the PEM file of private keys that the tokenmint filter signs
	// with; only the public parts are published. Required.
	KeyFile string `yaml:"keyFile"`
	// MaxAge is how long clients may cache the set (Cache-Control max-age), in
	// whole seconds. Default 60s, 0s (revalidate every time) to 1h.
	MaxAge *config.Duration `yaml:"maxAge,omitempty"`
}

// Factory decodes and checks the config and loads the key file's public keys.
func Factory(b filter.Build) (filter.Filter, error) {
	var cfg Config
	if err := b.Config.Decode(&cfg); err != nil {
		return nil, err
	}
	log := b.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var probs filter.Problems
	fail := probs.Add
	maxAge := DefaultMaxAge
	if d := cfg.MaxAge; d != nil {
		switch {
		case d.D() > MaxMaxAge:
			fail("maxAge", "%v is more than %v: a long cache delays a key rotation by as much", d.D(), MaxMaxAge)
		case d.D()%time.Second != 0:
			fail("maxAge", "%v is not whole seconds (Cache-Control counts seconds)", d.D())
		}
		maxAge = d.D()
	}
	if cfg.KeyFile == "" {
		fail("keyFile", "required: the PEM file of the keys the tokenmint filter signs with")
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	signer, err := edgetoken.Load(cfg.KeyFile)
	if err != nil {
		fail("keyFile", "%v", err)
		return nil, probs.Err()
	}
	if fi, err := os.Stat(cfg.KeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("jwks: the key file can be read by group or others; make it 0600 or 0400",
			"filter", Type, "route", b.Route, "keyFile", cfg.KeyFile, "mode", fi.Mode().Perm().String())
	}
	return newPublisher(signer.JWKS(), int(maxAge/time.Second)), nil
}
