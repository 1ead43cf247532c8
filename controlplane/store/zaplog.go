package store

import (
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/portcullis/portcullis/internal/zapslog"
)

// newZapLogger returns the zap.Logger etcd's server and client log to: records at
// or above min reach logger's handler, tagged component=etcd, with etcd's logger
// name as "logger". A nil logger discards everything.
func newZapLogger(logger *slog.Logger, min zapcore.Level) *zap.Logger {
	if logger == nil {
		return zap.NewNop()
	}
	return zapslog.New(logger.With("component", "etcd").Handler(), zapslog.Options{Min: min, NameKey: "logger"})
}
