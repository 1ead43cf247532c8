package certs

import (
	"log/slog"

	"go.uber.org/zap"

	"github.com/portcullis/portcullis/internal/zapslog"
)

// newZapLogger returns a zap logger (what certmagic logs to) that writes into h,
// so certmagic's messages reach the proxy's log with its format, level and
// sinks. certmagic's logger names ("obtain", "renew", "handshake", ...) become
// the attribute "certmagic".
func newZapLogger(h slog.Handler) *zap.Logger {
	return zapslog.New(h, zapslog.Options{NameKey: "certmagic"})
}
