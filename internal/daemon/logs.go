package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"mailwarden/internal/config"
)

// NewLogger builds the daemon logger writing to w; level is adjustable on
// reload through lv.
func NewLogger(c config.Log, w io.Writer, lv *slog.LevelVar) *slog.Logger {
	lv.Set(parseLevel(c.Level))
	opts := &slog.HandlerOptions{Level: lv}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// logFile is the mail log's destination: standard output or a file that
// is reopened on SIGHUP so logrotate can move it away.
type logFile struct {
	mu     sync.Mutex
	path   string // "-" for stdout
	stdout io.Writer
	f      *os.File
}

func openLogFile(path string, stdout io.Writer) (*logFile, error) {
	l := &logFile{path: path, stdout: stdout}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// Write writes one log record.
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return l.stdout.Write(p)
	}
	return l.f.Write(p)
}

// Reopen closes and reopens the file.
func (l *logFile) Reopen() error {
	if l.path == "-" || l.path == "" {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("opening mail log: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file, if any.
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
