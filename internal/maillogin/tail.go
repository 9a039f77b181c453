package maillogin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"mailwarden/internal/defaults"
	"mailwarden/internal/logx"
)

// DefaultPoll is how often the Tailer looks for new lines when
// Options.Poll is zero.
const DefaultPoll = time.Second

// readChunk is the size of one read from the log file.
const readChunk = 32 << 10

// ErrNoPath is returned by NewTailer when Options.Path is empty.
var ErrNoPath = errors.New("maillogin: no log path configured")

// Options configures a Tailer.
type Options struct {
	// Path is the login log to follow, e.g. /var/log/mail.log or
	// Dovecot's log_path.
	Path string
	// Tracker, when set, receives every login read.
	Tracker *Tracker
	// Poll is how often the file is checked for new lines and rotation;
	// DefaultPoll when zero.
	Poll time.Duration
	// FromStart reads the lines already in the file when Run starts;
	// otherwise only lines appended afterwards count. A file that appears
	// or replaces the old one after Run has started is always read whole.
	FromStart bool
	// OnLogin, when set, is called for every login read, after the Tracker
	// has seen it, on Run's goroutine; it must not block for long.
	OnLogin func(Login)
	// Location is the zone of year-less syslog timestamps; time.Local
	// when nil.
	Location *time.Location
	// Log receives rotation, truncation and error reports; discarded when
	// nil.
	Log *slog.Logger
}

// Tailer follows a login log like "tail -F" and feeds the logins it reads
// to a Tracker and a callback.
type Tailer struct {
	opt Options
	log *slog.Logger

	f       *os.File    // the file being read, nil while waiting for one
	info    os.FileInfo // f's identity, to notice when Path names another file
	offset  int64       // bytes of f consumed
	lines   splitter
	buf     []byte
	waiting bool   // "waiting for file" already logged
	lastErr string // last open/stat error logged, to log each once
}

// NewTailer checks opt and returns a Tailer ready to Run.
func NewTailer(opt Options) (*Tailer, error) {
	if opt.Path == "" {
		return nil, ErrNoPath
	}
	opt.Poll = defaults.Positive(opt.Poll, DefaultPoll)
	if opt.Location == nil {
		opt.Location = time.Local
	}
	log := opt.Log
	log = logx.Or(log)
	return &Tailer{
		opt:   opt,
		log:   log.With("path", opt.Path),
		lines: splitter{max: MaxLineLen},
		buf:   make([]byte, readChunk),
	}, nil
}

// Run follows the log until ctx is cancelled, then returns nil. It waits
// for a missing file, reads appended lines, and on rotation (Path now names
// a different file) first finishes the old file and then reads the new one
// from its start. A file that shrinks is taken to have been truncated in
// place (logrotate copytruncate) and is read again from its start; if it
// grew past the old offset between two polls the truncation goes unseen, as
// with tail. A partial last line is held until its newline arrives; a
// partial line left in a rotated-away file is dropped, since a cut line
// could name the wrong address. Run must not be called twice at once.
func (t *Tailer) Run(ctx context.Context) error {
	defer t.closeFile()
	first := true
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		if t.f == nil {
			t.open(first)
		}
		first = false
		if t.f != nil {
			t.drain(ctx)
			t.checkRotation(ctx)
		}
		timer.Reset(t.opt.Poll)
	}
}

// open opens Path; at Run's start without FromStart it skips what is there.
func (t *Tailer) open(atStart bool) {
	f, err := os.Open(t.opt.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if !t.waiting {
				t.log.Info("maillogin: waiting for log file to appear")
				t.waiting = true
			}
			return
		}
		t.logOnce("maillogin: opening log file", err)
		return
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		t.logOnce("maillogin: checking log file", err)
		return
	}
	t.f, t.info, t.offset = f, info, 0
	t.waiting, t.lastErr = false, ""
	t.lines.reset()
	if atStart && !t.opt.FromStart {
		pos, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			t.logOnce("maillogin: seeking to end of log file", err)
			t.closeFile()
			return
		}
		t.offset = pos
	}
	t.log.Debug("maillogin: following log file", "offset", t.offset)
}

// drain reads f to its current end, handling every complete line.
func (t *Tailer) drain(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := t.f.Read(t.buf)
		if n > 0 {
			t.offset += int64(n)
			t.lines.feed(t.buf[:n], t.handle, t.tooLong)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.logOnce("maillogin: reading log file", err)
			}
			return
		}
	}
}

// checkRotation notices a truncated file or a Path that now names another
// file, and switches over after finishing what the old file holds.
func (t *Tailer) checkRotation(ctx context.Context) {
	cur, err := t.f.Stat()
	if err == nil && cur.Size() < t.offset {
		t.log.Info("maillogin: log file truncated, reading from start",
			"old_offset", t.offset, "size", cur.Size())
		if _, err := t.f.Seek(0, io.SeekStart); err != nil {
			t.logOnce("maillogin: rewinding truncated log file", err)
			t.closeFile()
			return
		}
		t.offset = 0
		t.lines.reset()
		t.drain(ctx)
		return
	}
	now, err := os.Stat(t.opt.Path)
	if err != nil {
		// Renamed away and not yet recreated: the writer may still be
		// appending to the old file, so keep reading it meanwhile.
		return
	}
	if os.SameFile(t.info, now) {
		return
	}
	// Lines written to the old file between the last read and the
	// rename belong to it; read them before switching.
	t.drain(ctx)
	if n := t.lines.reset(); n > 0 {
		t.log.Debug("maillogin: dropped partial last line of rotated log file", "bytes", n)
	}
	t.log.Info("maillogin: log file rotated, following the new one")
	t.closeFile()
	t.open(false)
	if t.f != nil {
		t.drain(ctx)
	}
}

// handle parses one complete line and passes a login on.
func (t *Tailer) handle(line []byte) {
	if len(line) > MaxParseLen {
		return
	}
	now := time.Now().In(t.opt.Location)
	l, ok := parseAt(string(line), now.Year(), t.opt.Location, now)
	if !ok {
		return
	}
	if t.opt.Tracker != nil {
		t.opt.Tracker.Observe(l)
	}
	if t.opt.OnLogin != nil {
		t.opt.OnLogin(l)
	}
}

func (t *Tailer) tooLong() {
	t.log.Debug("maillogin: skipped over-long log line", "limit", MaxLineLen)
}

// logOnce logs err unless it is the same error as last time, so a file that
// stays unreadable does not flood the log at every poll.
func (t *Tailer) logOnce(msg string, err error) {
	if s := err.Error(); s != t.lastErr {
		t.lastErr = s
		t.log.Warn(msg, "err", err)
	}
}

func (t *Tailer) closeFile() {
	if t.f != nil {
		t.f.Close()
		t.f, t.info = nil, nil
	}
}

// MaxLineLen is the longest log line the Tailer keeps. A longer line is
// skipped whole, so a runaway writer cannot make the tailer grow without
// bound.
const MaxLineLen = 64 << 10

// splitter cuts a byte stream into lines. It holds a partial last line until
// its newline arrives, and drops any line longer than max, including the
// part that arrives after the limit is passed.
type splitter struct {
	max      int
	pending  []byte
	skipping bool // inside an over-long line, waiting for its newline
}

// feed splits chunk into complete lines and calls line for each, without
// the newline or a trailing CR. It calls long once for every line dropped
// for length.
func (s *splitter) feed(chunk []byte, line func([]byte), long func()) {
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			s.hold(chunk, long)
			return
		}
		part := chunk[:i]
		chunk = chunk[i+1:]
		if s.skipping {
			s.skipping = false
			continue
		}
		if len(s.pending)+len(part) > s.max {
			s.pending = s.pending[:0]
			long()
			continue
		}
		if len(s.pending) > 0 {
			s.pending = append(s.pending, part...)
			part = s.pending
		}
		line(bytes.TrimSuffix(part, []byte{'\r'}))
		s.pending = s.pending[:0]
	}
}

// hold keeps a partial line, or starts skipping once it is over the limit.
func (s *splitter) hold(part []byte, long func()) {
	if s.skipping {
		return
	}
	if len(s.pending)+len(part) > s.max {
		s.pending = s.pending[:0]
		s.skipping = true
		long()
		return
	}
	s.pending = append(s.pending, part...)
}

// reset forgets any partial or skipped line, for a truncated or new file.
// It reports how many bytes of partial line were dropped.
func (s *splitter) reset() int {
	n := len(s.pending)
	s.pending = s.pending[:0]
	s.skipping = false
	return n
}
