// Package zapslog carries records from libraries that log through zap (etcd,
// certmagic) into an slog.Handler, so that one handler decides format,
// destination and level for everything the process logs.
//
// It is not for: new code, which logs through slog directly.
package zapslog

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Options tune New. The zero value passes every level the handler enables and
// drops zap's logger names.
type Options struct {
	// Min, when set, drops records it does not enable (zapcore.WarnLevel, say)
	// before the handler is asked. Nil: the handler alone decides.
	Min zapcore.LevelEnabler
	// NameKey, when set, is the attribute zap's logger name (certmagic's "obtain",
	// "renew", ...) is written under.
	NameKey string
}

// New returns a zap.Logger that writes into h. A nil h discards everything.
func New(h slog.Handler, o Options) *zap.Logger {
	if h == nil {
		return zap.NewNop()
	}
	return zap.New(&core{h: h, o: o})
}

// core is a zapcore.Core over a slog.Handler.
type core struct {
	h slog.Handler
	o Options
}

func (c *core) Enabled(l zapcore.Level) bool {
	return (c.o.Min == nil || c.o.Min.Enabled(l)) && c.h.Enabled(context.Background(), Level(l))
}

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	return &core{h: c.h.WithAttrs(Attrs(fields)), o: c.o}
}

func (c *core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *core) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, Level(e.Level), e.Message, 0)
	if c.o.NameKey != "" && e.LoggerName != "" {
		r.AddAttrs(slog.String(c.o.NameKey, e.LoggerName))
	}
	r.AddAttrs(Attrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c *core) Sync() error { return nil }

// Attrs converts zap fields with zap's own encoder (which knows every field type),
// one at a time so that their order is kept.
func Attrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	out := make([]slog.Attr, 0, len(fields))
	for _, f := range fields {
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		for k, v := range enc.Fields {
			out = append(out, slog.Any(k, v))
		}
	}
	return out
}

// Level maps zap's levels onto slog's; DPanic and above are errors.
func Level(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}
