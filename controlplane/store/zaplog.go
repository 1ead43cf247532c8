package store

import (
	"context"
	"log/slog"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcd's server and client log through zap; the control plane logs through slog.
// slogCore is the zapcore.Core that carries etcd's records over to an slog.Logger,
// so that one handler decides format, destination and level for both.
type slogCore struct {
	handler slog.Handler
	min     zapcore.Level
	attrs   []slog.Attr
}

// newZapLogger returns a zap.Logger writing records at or above min to logger's
// handler, each tagged component=etcd. A nil logger discards everything.
func newZapLogger(logger *slog.Logger, min zapcore.Level) *zap.Logger {
	if logger == nil {
		return zap.NewNop()
	}
	return zap.New(&slogCore{
		handler: logger.Handler(),
		min:     min,
		attrs:   []slog.Attr{slog.String("component", "etcd")},
	})
}

func (c *slogCore) Enabled(level zapcore.Level) bool {
	return level >= c.min && c.handler.Enabled(context.Background(), slogLevel(level))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.attrs = append(slices.Clip(c.attrs), fieldsToAttrs(fields)...)
	return &clone
}

func (c *slogCore) Check(entry zapcore.Entry, checked *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(entry.Level) {
		return checked.AddCore(entry, c)
	}
	return checked
}

func (c *slogCore) Write(entry zapcore.Entry, fields []zapcore.Field) error {
	record := slog.NewRecord(entry.Time, slogLevel(entry.Level), entry.Message, 0)
	record.AddAttrs(c.attrs...)
	if entry.LoggerName != "" {
		record.AddAttrs(slog.String("logger", entry.LoggerName))
	}
	record.AddAttrs(fieldsToAttrs(fields)...)
	return c.handler.Handle(context.Background(), record)
}

func (c *slogCore) Sync() error { return nil }

// fieldsToAttrs encodes zap fields through zap's own map encoder, which knows every
// field type, and turns the result into slog attributes in field order.
func fieldsToAttrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	attrs := make([]slog.Attr, 0, len(fields))
	for _, f := range fields {
		f.AddTo(enc)
		if v, ok := enc.Fields[f.Key]; ok {
			attrs = append(attrs, slog.Any(f.Key, v))
			delete(enc.Fields, f.Key)
		}
	}
	return attrs
}

func slogLevel(level zapcore.Level) slog.Level {
	switch {
	case level <= zapcore.DebugLevel:
		return slog.LevelDebug
	case level == zapcore.InfoLevel:
		return slog.LevelInfo
	case level == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}
