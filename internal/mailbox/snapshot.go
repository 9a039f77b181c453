package mailbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// snapshotHeader starts every snapshot file.
const snapshotHeader = "# mailwarden mailbox snapshot v1"

// Snapshot is the list of mailboxes at one moment, each with when it was
// first seen, so that a later audit can tell which ones are new. Taking
// snapshots regularly (from cron) is what lets an audit on the bad day
// separate planted boxes from old ones.
type Snapshot struct {
	Taken time.Time
	// FirstSeen maps "local@domain" (domain lowercased) to the first
	// snapshot that listed it.
	FirstSeen map[string]time.Time
}

// snapshotKey is the address a snapshot lists m under.
func snapshotKey(m Mailbox) string {
	if m.Domain == "" {
		return m.Local
	}
	return m.Local + "@" + strings.ToLower(m.Domain)
}

// Has reports whether the snapshot lists m.
func (s *Snapshot) Has(m Mailbox) bool {
	_, ok := s.FirstSeen[snapshotKey(m)]
	return ok
}

// NewSnapshot lists inv's mailboxes at now, keeping the first-seen times
// prev (which may be nil) has for those still there.
func NewSnapshot(inv *Inventory, prev *Snapshot, now time.Time) *Snapshot {
	s := &Snapshot{Taken: now.UTC(), FirstSeen: make(map[string]time.Time, len(inv.Mailboxes))}
	for _, m := range inv.Mailboxes {
		k := snapshotKey(m)
		if _, ok := s.FirstSeen[k]; ok {
			continue
		}
		first := s.Taken
		if prev != nil {
			if t, ok := prev.FirstSeen[k]; ok {
				first = t
			}
		}
		s.FirstSeen[k] = first
	}
	return s
}

// New counts the addresses s has that prev (which may be nil) had not.
func (s *Snapshot) New(prev *Snapshot) int {
	n := 0
	for k := range s.FirstSeen {
		if prev == nil {
			n++
		} else if _, ok := prev.FirstSeen[k]; !ok {
			n++
		}
	}
	return n
}

// Marshal renders the snapshot: a header, then one "address<TAB>first
// seen" line per mailbox, sorted.
func (s *Snapshot) Marshal() []byte {
	keys := make([]string, 0, len(s.FirstSeen))
	for k := range s.FirstSeen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b bytes.Buffer
	b.Grow(len(keys) * 48)
	fmt.Fprintf(&b, "%s\n# taken %s, %d mailboxes\n", snapshotHeader, s.Taken.Format(time.RFC3339), len(keys))
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('\t')
		b.WriteString(s.FirstSeen[k].UTC().Format(time.RFC3339))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// WriteSnapshot writes s to path atomically, so a crash leaves the old
// snapshot or the new one.
func WriteSnapshot(path string, s *Snapshot) error {
	if err := writeNew(path, s.Marshal(), 0o600); err != nil {
		return fmt.Errorf("mailbox: writing snapshot: %w", err)
	}
	return nil
}

// ReadSnapshot reads a snapshot file. A missing file gives an error
// satisfying errors.Is(err, fs.ErrNotExist).
func ReadSnapshot(path string) (*Snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mailbox: reading snapshot: %w", err)
	}
	return ParseSnapshot(path, data)
}

// ParseSnapshot parses a snapshot file's content.
func ParseSnapshot(path string, data []byte) (*Snapshot, error) {
	s := &Snapshot{FirstSeen: map[string]time.Time{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxLineBytes)
	var err error
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		bad := func(msg string) error { return &ParseError{Path: path, Line: n, Msg: msg} }
		if n == 1 {
			if line != snapshotHeader {
				return nil, bad("not a mailwarden mailbox snapshot (no " + snapshotHeader + " header)")
			}
			continue
		}
		if t, ok := strings.CutPrefix(line, "# taken "); ok {
			taken, _, _ := strings.Cut(t, ",")
			if s.Taken, err = time.Parse(time.RFC3339, taken); err != nil {
				return nil, bad(fmt.Sprintf("bad time %q", taken))
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		addr, when, ok := strings.Cut(line, "\t")
		if !ok || addr == "" {
			return nil, bad(fmt.Sprintf("%q is not \"address<TAB>time\"", clip(line)))
		}
		t, err := time.Parse(time.RFC3339, when)
		if err != nil {
			return nil, bad(fmt.Sprintf("bad time %q", clip(when)))
		}
		s.FirstSeen[addr] = t
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: reading snapshot %s: %w", path, err)
	}
	if len(data) == 0 {
		return nil, &ParseError{Path: path, Msg: "empty file, not a snapshot"}
	}
	return s, nil
}
