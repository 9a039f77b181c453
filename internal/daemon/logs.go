package daemon

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

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

// mailLogFlush is how long a decision line may sit in the buffer. A write
// system call per decision cost a tenth of the policy server's time; a
// crash now loses at most this much of the mail log, never a decision.
const mailLogFlush = 100 * time.Millisecond

// logFile is the mail log's destination: standard output or a file that
// is reopened on SIGHUP so logrotate can move it away. Lines are buffered
// and flushed every mailLogFlush, on Reopen and on Close.
type logFile struct {
	mu     sync.Mutex
	path   string // "-" for stdout
	f      *os.File
	buf    *bufio.Writer
	stdout io.Writer
	stop   chan struct{}
	done   chan struct{}
}

func openLogFile(path string, stdout io.Writer) (*logFile, error) {
	l := &logFile{path: path, stdout: stdout, stop: make(chan struct{}), done: make(chan struct{})}
	l.buf = bufio.NewWriterSize(stdout, 64<<10)
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	go l.flusher()
	return l, nil
}

func (l *logFile) flusher() {
	defer close(l.done)
	t := time.NewTicker(mailLogFlush)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.Flush()
		case <-l.stop:
			return
		}
	}
}

// Write buffers one log record.
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Flush writes buffered records out.
func (l *logFile) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Flush()
}

// Reopen flushes, closes and reopens the file.
func (l *logFile) Reopen() error {
	if l.path == "-" || l.path == "" {
		return l.Flush()
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("opening mail log: %w", err)
	}
	l.mu.Lock()
	l.buf.Flush()
	old := l.f
	l.f = f
	l.buf.Reset(f)
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close flushes and closes the file, if any. It may be called twice.
func (l *logFile) Close() error {
	select {
	case <-l.stop:
	default:
		close(l.stop)
		<-l.done
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.buf.Flush()
	if l.f != nil {
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
		l.f = nil
		l.buf.Reset(l.stdout)
	}
	return err
}
