package mailbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"mailwarden/internal/defaults"
	"mailwarden/internal/human"
	"mailwarden/internal/logx"
)

// WatchOptions configure a Watcher.
type WatchOptions struct {
	Source Source
	// BurstCount new mailboxes within BurstWindow are a burst.
	BurstCount  int
	BurstWindow time.Duration
	// Settle is how long a file must be quiet before it is read, so that
	// one being written is read whole; 250ms when zero.
	Settle time.Duration
	// OnBurst is called, from the watcher's goroutine, for each burst.
	OnBurst func(WatchBurst)
	Log     *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// WatchBurst is a burst of new mailboxes seen by a Watcher.
type WatchBurst struct {
	Time   time.Time
	Count  int
	Window time.Duration
	// Mailboxes are the new addresses, sorted; Domains how many domains
	// they are on.
	Mailboxes []string
	Domains   int
	// Continued marks new mailboxes that arrived in the quiet window
	// after a burst was reported: one event per window, none dropped.
	Continued bool
}

// Summary renders the burst in one line, naming at most ten mailboxes.
func (b WatchBurst) Summary() string {
	what := "burst"
	if b.Continued {
		what = "burst continued"
	}
	var names []string
	for _, n := range b.Mailboxes[:min(len(b.Mailboxes), 10)] {
		names = append(names, clip(n))
	}
	more := ""
	if len(b.Mailboxes) > 10 {
		more = fmt.Sprintf(" and %d more", len(b.Mailboxes)-10)
	}
	return fmt.Sprintf("%s: %d new mailboxes on %d domains within %s: %s%s", what, b.Count, b.Domains, human.Setting(b.Window),
		strings.Join(names, ", "), more)
}

// Watcher follows the passwd files through fsnotify on their directories
// (files are often replaced by rename, which a watch on the file itself
// would miss) and reports bursts of new mailboxes.
type Watcher struct {
	o   WatchOptions
	fsw *fsnotify.Watcher
	// users are the users each passwd file has had since the watch
	// started. A user is never dropped: a file caught half rewritten
	// must not make its users count as new when it is read whole.
	users map[string]map[string]bool
	// unread are files that existed but could not be read at the start;
	// their first good read is their baseline, not a flood of new users.
	unread  map[string]bool
	dirty   map[string]bool
	arrived []arrival
	pending []arrival // arrivals during the quiet window after a burst
	quiet   time.Time // no new burst is reported before this
}

type arrival struct {
	addr, domain string
	at           time.Time
}

// NewWatcher reads the passwd files as they are now, the baseline new
// mailboxes are measured against, and starts watching their directories.
func NewWatcher(o WatchOptions) (*Watcher, error) {
	if o.BurstCount < 1 || o.BurstWindow <= 0 {
		return nil, errors.New("mailbox: a watch needs a burst count and window")
	}
	o.Settle = defaults.Positive(o.Settle, 250*time.Millisecond)
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Log = logx.Or(o.Log)
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("mailbox: starting the watch: %w", err)
	}
	w := &Watcher{o: o, fsw: fsw, users: map[string]map[string]bool{}, unread: map[string]bool{}, dirty: map[string]bool{}}
	var dirs []string
	switch o.Source.Layout {
	case LayoutDirectAdmin:
		domains, _, err := o.Source.daDomains()
		if err != nil {
			fsw.Close()
			return nil, err
		}
		dirs = append(dirs, o.Source.Root)
		for _, d := range domains {
			dirs = append(dirs, d.Dir)
			w.baseline(d.passwd())
		}
	case LayoutDovecot:
		for _, f := range o.Source.PasswdFiles {
			dirs = append(dirs, filepath.Dir(f))
			w.baseline(f)
		}
	default:
		fsw.Close()
		return nil, fmt.Errorf("mailbox: unknown layout %q", o.Source.Layout)
	}
	slices.Sort(dirs)
	for _, d := range slices.Compact(dirs) {
		if err := fsw.Add(d); err != nil {
			fsw.Close()
			return nil, fmt.Errorf("mailbox: watching %s: %w", d, err)
		}
	}
	return w, nil
}

// Files returns how many passwd files are watched.
func (w *Watcher) Files() int { return len(w.users) }

// Close stops watching.
func (w *Watcher) Close() error { return w.fsw.Close() }

// Run handles changes until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if w.handle(ev) {
				settle.Reset(w.o.Settle)
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			// An overflow loses events; reading every file again finds
			// whatever they were about.
			w.o.Log.Warn("mailbox watch: file events lost; reading every passwd file again", "err", err)
			for f := range w.users {
				w.dirty[f] = true
			}
			settle.Reset(w.o.Settle)
		case <-settle.C:
			if w.scan() {
				quiet.Reset(w.o.BurstWindow)
			}
		case <-quiet.C:
			if w.flushPending() {
				quiet.Reset(w.o.BurstWindow)
			}
		}
	}
}

// handle notes which passwd file an event concerns and reports whether
// one is now waiting to be read.
func (w *Watcher) handle(ev fsnotify.Event) bool {
	src := w.o.Source
	switch src.Layout {
	case LayoutDirectAdmin:
		if filepath.Dir(ev.Name) == filepath.Clean(src.Root) {
			// A new domain directory: watch it, and read its passwd file
			// (all of its boxes are new) once it settles.
			if ev.Has(fsnotify.Create) {
				if st, err := os.Lstat(ev.Name); err == nil && st.IsDir() && !strings.HasPrefix(filepath.Base(ev.Name), ".") {
					if err := w.fsw.Add(ev.Name); err != nil {
						w.o.Log.Warn("mailbox watch: cannot watch a new domain", "dir", ev.Name, "err", err)
					}
					w.dirty[filepath.Join(ev.Name, "passwd")] = true
					return true
				}
			}
			return false
		}
		if filepath.Base(ev.Name) == "passwd" && filepath.Dir(filepath.Dir(ev.Name)) == filepath.Clean(src.Root) {
			w.dirty[ev.Name] = true
			return true
		}
	case LayoutDovecot:
		if slices.Contains(src.PasswdFiles, ev.Name) {
			w.dirty[ev.Name] = true
			return true
		}
	}
	return false
}

// baseline records the users a file has at the start.
func (w *Watcher) baseline(path string) {
	w.users[path] = w.read(path)
	if w.users[path] == nil && exists(path) {
		w.unread[path] = true
	}
}

// read returns the users of one passwd file; nil when it cannot be read.
func (w *Watcher) read(path string) map[string]bool {
	f, err := readFile(path)
	if err != nil {
		if !isNotExist(err) {
			w.o.Log.Warn("mailbox watch: passwd file not read", "file", path, "err", err)
		}
		return nil
	}
	users := make(map[string]bool, len(f.Lines))
	for _, l := range f.Lines {
		if l.Key != "" {
			users[l.Key] = true
		}
	}
	return users
}

// scan reads the changed files, records new users and reports a burst;
// it returns whether one was reported.
func (w *Watcher) scan() bool {
	now := w.o.Now()
	for path := range w.dirty {
		delete(w.dirty, path)
		users := w.read(path)
		if w.unread[path] && users != nil {
			delete(w.unread, path)
			w.users[path] = users
			continue
		}
		seen := w.users[path]
		if seen == nil {
			seen = map[string]bool{}
			w.users[path] = seen
		}
		for u := range users {
			if !seen[u] {
				seen[u] = true
				addr, domain := w.address(path, u)
				w.arrived = append(w.arrived, arrival{addr, domain, now})
			}
		}
	}
	cut := now.Add(-w.o.BurstWindow)
	w.arrived = slices.DeleteFunc(w.arrived, func(a arrival) bool { return a.at.Before(cut) })
	if now.Before(w.quiet) {
		w.pending = append(w.pending, w.arrived...)
		w.arrived = w.arrived[:0]
		return false
	}
	if len(w.arrived) < w.o.BurstCount {
		return false
	}
	w.report(w.arrived, false, now)
	w.arrived = nil
	return true
}

// flushPending reports the mailboxes that came during the quiet window.
func (w *Watcher) flushPending() bool {
	if len(w.pending) == 0 {
		return false
	}
	w.report(w.pending, true, w.o.Now())
	w.pending = nil
	return true
}

func (w *Watcher) report(as []arrival, continued bool, now time.Time) {
	w.quiet = now.Add(w.o.BurstWindow)
	b := WatchBurst{Time: now, Count: len(as), Window: w.o.BurstWindow, Continued: continued}
	domains := map[string]bool{}
	for _, a := range as {
		b.Mailboxes = append(b.Mailboxes, a.addr)
		domains[a.domain] = true
	}
	slices.Sort(b.Mailboxes)
	b.Domains = len(domains)
	w.o.Log.Warn("mailbox watch: burst of new mailboxes", "count", b.Count, "domains", b.Domains, "window", b.Window.String())
	if w.o.OnBurst != nil {
		w.o.OnBurst(b)
	}
}

// address names user of a passwd file as local@domain.
func (w *Watcher) address(path, user string) (string, string) {
	if w.o.Source.Layout == LayoutDirectAdmin {
		domain := filepath.Base(filepath.Dir(path))
		return user + "@" + domain, domain
	}
	_, domain := splitUser(user)
	return user, domain
}
