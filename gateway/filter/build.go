package filter

import "log/slog"

// LoggerFor returns the logger a filter of type filterType built from b logs on:
// b.Logger with the filter's type and route as attributes, or, when b.Logger is
// nil (a filter built outside the core), a logger that discards everything.
func (b Build) LoggerFor(filterType string) *slog.Logger {
	log := b.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return log.With("filter", filterType, "route", b.Route)
}
