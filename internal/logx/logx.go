// Package logx holds the one default every component's logger shares.
package logx

import "log/slog"

// Or returns l, or a logger that drops everything when l is nil: a
// component handed no logger logs nothing.
func Or(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
