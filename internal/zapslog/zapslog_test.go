package zapslog_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/portcullis/portcullis/internal/zapslog"
)

func TestRecordsReachTheHandler(t *testing.T) {
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	log := zapslog.New(h, zapslog.Options{Min: zapcore.InfoLevel, NameKey: "certmagic"}).Named("obtain").With(zap.String("identifier", "a.example"))
	log.Debug("dropped below Min")
	log.Warn("retrying", zap.Int("attempt", 2), zap.Duration("wait", time.Second), zap.Strings("names", []string{"a", "b"}))
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("one JSON record expected, got %q: %v", buf.String(), err)
	}
	for k, want := range map[string]any{"level": "WARN", "msg": "retrying", "certmagic": "obtain", "identifier": "a.example", "attempt": float64(2), "wait": float64(time.Second)} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %v (record %v)", k, rec[k], want, rec)
		}
	}
	if names, _ := rec["names"].([]any); len(names) != 2 {
		t.Errorf("names = %v", rec["names"])
	}
}

func TestLevels(t *testing.T) {
	for zl, want := range map[zapcore.Level]slog.Level{
		zapcore.DebugLevel: slog.LevelDebug, zapcore.InfoLevel: slog.LevelInfo,
		zapcore.WarnLevel: slog.LevelWarn, zapcore.ErrorLevel: slog.LevelError, zapcore.DPanicLevel: slog.LevelError,
	} {
		if got := zapslog.Level(zl); got != want {
			t.Errorf("Level(%v) = %v, want %v", zl, got, want)
		}
	}
	if zapslog.New(nil, zapslog.Options{}).Core().Enabled(zapcore.ErrorLevel) {
		t.Error("a nil handler logs")
	}
}
