// Package spool holds messages while they are received, for checks that
// need the whole message (antivirus at end of message). The first bytes
// of a message stay in memory; the rest goes to a temporary file, so
// memory stays bounded whatever the message size.
package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// FilePrefix starts the name of every spool file, so that Clean removes
// only files this package made.
const FilePrefix = "mailwarden-spool-"

// StaleAfter is the age past which Clean removes a spool file: no
// message stays in the milter that long, so such a file was left by a
// crash.
const StaleAfter = 24 * time.Hour

// writeBuffer batches small writes (header fields) to the spill file.
const writeBuffer = 32 << 10

// ErrClosed is returned by a Message used after Close.
var ErrClosed = errors.New("spool: message closed")

// Spool makes Messages that keep up to Memory bytes in memory and spill
// the rest to files in Dir. It is safe for concurrent use.
type Spool struct {
	dir    string
	memory int64
	// createTemp makes the spill file; tests replace it.
	createTemp func(dir, pattern string) (*os.File, error)
}

// New returns a Spool keeping up to memory bytes of each message in
// memory and the rest in files in dir, which it creates (mode 0700) if
// missing. The directory holds message content: only mailwarden may read
// it.
func New(dir string, memory int64) (*Spool, error) {
	if memory <= 0 {
		return nil, fmt.Errorf("spool: memory threshold %d must be positive", memory)
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("spool: directory %q must be an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: creating directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: checking directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("spool: %s is not a directory", dir)
	}
	return &Spool{dir: dir, memory: memory, createTemp: os.CreateTemp}, nil
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Memory returns how many bytes of a message are kept in memory.
func (s *Spool) Memory() int64 { return s.memory }

// NewMessage returns an empty message. The caller writes the message to
// it, reads it through Open and must Close it to free its file.
func (s *Spool) NewMessage() *Message {
	return &Message{s: s}
}

// Message is one message being spooled. Write it completely, then Open it
// as often as needed; Write and Close must not run at the same time as
// other calls, Open and the readers it returns may. It implements
// policy.Message.
type Message struct {
	s *Spool

	mu     sync.Mutex
	mem    []byte
	file   *os.File
	buf    *bufio.Writer // in front of file
	size   int64
	err    error // first write error; sticky
	closed bool
}

// Write appends p. The first error (a full disk, a vanished directory) is
// returned again by every later Write and by Err and Open: a message
// missing a piece must not be scanned as if it were whole.
func (m *Message) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	if m.err != nil {
		return 0, m.err
	}
	n := 0
	if room := m.s.memory - int64(len(m.mem)); room > 0 && m.file == nil {
		k := int(min(room, int64(len(p))))
		m.grow(k)
		m.mem = append(m.mem, p[:k]...)
		n, p = k, p[k:]
	}
	if len(p) > 0 {
		if m.file == nil {
			f, err := m.s.createTemp(m.s.dir, FilePrefix+"*")
			if err != nil {
				m.err = fmt.Errorf("spool: creating spill file: %w", err)
				m.size += int64(n)
				return n, m.err
			}
			m.file, m.buf = f, bufio.NewWriterSize(f, writeBuffer)
		}
		k, err := m.buf.Write(p)
		n += k
		if err != nil {
			m.err = fmt.Errorf("spool: writing spill file: %w", err)
		}
	}
	m.size += int64(n)
	return n, m.err
}

// grow makes room for k more bytes in memory without ever holding more
// than the threshold: append alone may double the capacity past it.
func (m *Message) grow(k int) {
	need := len(m.mem) + k
	if need <= cap(m.mem) {
		return
	}
	c := min(max(2*cap(m.mem), need, 4096), int(m.s.memory))
	b := make([]byte, len(m.mem), c)
	copy(b, m.mem)
	m.mem = b
}

// Size returns the number of bytes written.
func (m *Message) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.size
}

// Err returns the first write error, or nil.
func (m *Message) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Spilled reports whether part of the message is in a file.
func (m *Message) Spilled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.file != nil
}

// Open returns a reader over the whole message from its first byte. Each
// reader is independent; closing it does not close the message. A
// message whose spooling failed cannot be opened.
func (m *Message) Open() (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if m.err != nil {
		return nil, m.err
	}
	mem := bytes.NewReader(m.mem)
	if m.file == nil {
		return io.NopCloser(mem), nil
	}
	if err := m.buf.Flush(); err != nil {
		m.err = fmt.Errorf("spool: writing spill file: %w", err)
		return nil, m.err
	}
	// ReadAt keeps no file offset, so readers do not disturb each other.
	tail := io.NewSectionReader(m.file, 0, m.size-int64(len(m.mem)))
	return io.NopCloser(io.MultiReader(mem, tail)), nil
}

// Close frees the message: its memory and its file. It is safe to call
// more than once.
func (m *Message) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.mem = nil
	if m.file == nil {
		return nil
	}
	name := m.file.Name()
	cerr := m.file.Close()
	rerr := os.Remove(name)
	m.file, m.buf = nil, nil
	if rerr != nil {
		return fmt.Errorf("spool: removing %s: %w", name, rerr)
	}
	if cerr != nil && !errors.Is(cerr, os.ErrClosed) {
		return fmt.Errorf("spool: closing %s: %w", name, cerr)
	}
	return nil
}

// Clean removes spool files in dir older than StaleAfter, which a crash
// left behind, and returns how many it removed. Files still in use are
// younger. A missing dir is not an error.
func Clean(dir string) (int, error) {
	return cleanBefore(dir, time.Now().Add(-StaleAfter))
}

func cleanBefore(dir string, cutoff time.Time) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool: cleaning %s: %w", dir, err)
	}
	var errs []error
	removed := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), FilePrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if !fi.ModTime().Before(cutoff) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("spool: removing stale %s: %w", e.Name(), err))
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
