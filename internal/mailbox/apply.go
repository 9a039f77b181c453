package mailbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Errors a removal returns.
var (
	// ErrRefused: a guard or an unreadable file stopped the removal
	// before anything was changed.
	ErrRefused = errors.New("mailbox: removal refused")
	// ErrChanged: a file changed between planning and the rename; it was
	// left as it was.
	ErrChanged = errors.New("mailbox: file changed during the edit")
	// ErrVerify: a rewritten file did not read back as planned.
	ErrVerify = errors.New("mailbox: verification failed")
)

// ApplyOptions configure a removal.
type ApplyOptions struct {
	// BackupDir receives a directory per removal; it also holds the lock.
	BackupDir string
	// QuarantineDir receives the mail directories, under the removal's ID.
	QuarantineDir string
	// MaxShare is the largest share of a passwd file's mailboxes that
	// may go without Force.
	MaxShare float64
	// Force lets a removal empty a passwd file or take more than MaxShare.
	Force bool
	// Now is the clock; time.Now when nil.
	Now func() time.Time `json:"-"`
}

// Result is what a removal did.
type Result struct {
	ID     string // the backup's ID, for "mailbox restore"
	Backup string // the backup directory
	// Edited are the files rewritten and verified.
	Edited []string
	// Moved are the directories and files now in the quarantine.
	Moved []ManifestMove
	// Failed are files and moves that failed; Skipped the units (domains
	// or passwd-files) left alone after a failure in them.
	Failed  []error
	Skipped []string
}

// Remove removes targets from src. Under the lock in BackupDir it
// plans afresh, applies the guards, writes the backup, rewrites each
// file atomically (aborting a file that changed meanwhile), verifies
// it, and moves mail directories to the quarantine. The plan is
// returned even when the removal is refused, to show why.
func Remove(src Source, targets []Target, o ApplyOptions) (*Plan, *Result, error) {
	if o.BackupDir == "" || o.QuarantineDir == "" {
		return nil, nil, errors.New("mailbox: a removal needs a backup and a quarantine directory")
	}
	if err := mkdirSynced(o.BackupDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("mailbox: creating the backup directory: %w", err)
	}
	release, err := lockFile(filepath.Join(o.BackupDir, lockName))
	if err != nil {
		return nil, nil, err
	}
	defer release()
	p, err := BuildPlan(src, targets, o.QuarantineDir)
	if err != nil {
		return nil, nil, err
	}
	res, err := p.apply(o)
	return p, res, err
}

func (p *Plan) apply(o ApplyOptions) (*Result, error) {
	if len(p.Errors) > 0 {
		return nil, fmt.Errorf("%w: files that cannot be edited safely:\n%w", ErrRefused, errors.Join(p.Errors...))
	}
	if r := p.Refusals(o.MaxShare); len(r) > 0 && !o.Force {
		lines := make([]string, len(r))
		for i, x := range r {
			lines[i] = x.String()
		}
		return nil, fmt.Errorf("%w (--force overrides):\n%s", ErrRefused, strings.Join(lines, "\n"))
	}
	if len(p.Changes) == 0 {
		return &Result{}, nil
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	m, dir, err := p.writeBackup(o, now())
	if err != nil {
		return nil, err
	}
	res := &Result{ID: m.ID, Backup: dir}
	if err := writeState(dir, StateApplying, now()); err != nil {
		return res, err
	}
	failed := map[string]bool{}
	fail := func(unit string, err error) {
		res.Failed = append(res.Failed, err)
		if !failed[unit] {
			failed[unit] = true
			res.Skipped = append(res.Skipped, unit)
		}
	}
	for i := range p.Changes {
		c := &p.Changes[i]
		if failed[c.Unit] {
			continue
		}
		if err := c.apply(m.ID); err != nil {
			fail(c.Unit, err)
			if errors.Is(err, ErrVerify) {
				// Something else is writing these files: stop here.
				break
			}
			continue
		}
		res.Edited = append(res.Edited, c.Path)
	}
	units := p.movable()
	var ds dirSyncer
	for i, mv := range m.Moves {
		if failed[units[i].Unit] {
			continue
		}
		if err := quarantine(mv, &ds); err != nil {
			res.Failed = append(res.Failed, err)
			continue
		}
		res.Moved = append(res.Moved, mv)
	}
	if err := ds.sync(); err != nil {
		res.Failed = append(res.Failed, fmt.Errorf("mailbox: syncing the moves: %w", err))
	}
	state := StateComplete
	if len(res.Failed) > 0 {
		state = fmt.Sprintf("%s: %d failure(s)", StateIncomplete, len(res.Failed))
	}
	var untouched []string
	for _, c := range p.Changes {
		if !slices.Contains(res.Edited, c.Path) {
			untouched = append(untouched, c.Path)
		}
	}
	if err := writeState(dir, state, now(), untouched...); err != nil {
		res.Failed = append(res.Failed, err)
	}
	return res, nil
}

// movable returns the moves that can be made, in plan order.
func (p *Plan) movable() []Move {
	var out []Move
	for _, mv := range p.Moves {
		if mv.Problem == "" {
			out = append(out, mv)
		}
	}
	return out
}

// tmpName is the temporary file a removal with this ID writes beside
// path; restore removes any a killed run left behind.
func tmpName(path, id string) string {
	return "." + filepath.Base(path) + ".mailwarden-" + id + ".tmp"
}

// apply rewrites one file and verifies it.
func (c *Change) apply(id string) error {
	check := func() error {
		meta, err := statMeta(c.Path)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrChanged, c.Path, err)
		}
		cur, err := os.ReadFile(c.Path)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrChanged, c.Path, err)
		}
		if !meta.same(c.Meta) || !bytes.Equal(cur, c.Old) {
			return fmt.Errorf("%w: %s was modified after it was read; it was left as it is now", ErrChanged, c.Path)
		}
		return nil
	}
	if err := replaceFile(c.Path, tmpName(c.Path, id), c.New, c.Meta, check); err != nil {
		if errors.Is(err, ErrChanged) {
			return err
		}
		return fmt.Errorf("mailbox: rewriting %s: %w", c.Path, err)
	}
	return c.verify()
}

// verify re-reads a rewritten file and checks, independently of how it
// was produced, that it is the old content with exactly the removed
// lines taken out, that none of the removed entries is left, and that
// owner and mode were kept.
func (c *Change) verify() error {
	got, err := os.ReadFile(c.Path)
	if err != nil {
		return fmt.Errorf("%w: re-reading %s: %w", ErrVerify, c.Path, err)
	}
	gone := map[int]bool{}
	keys := map[string]bool{}
	for _, r := range c.Removed {
		gone[r.Line] = true
		keys[r.Key] = true
	}
	var want []byte
	for i, chunk := range bytes.SplitAfter(c.Old, []byte("\n")) {
		if !gone[i+1] {
			want = append(want, chunk...)
		}
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w: %s does not read back as the old file minus lines %s", ErrVerify, c.Path, joinInts(slices.Sorted(maps.Keys(gone))))
	}
	f, err := Parse(c.Path, got)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrVerify, err)
	}
	for _, l := range f.Lines {
		if keys[l.Key] {
			return fmt.Errorf("%w: %s still has %q on line %d", ErrVerify, c.Path, l.Key, l.Num)
		}
	}
	meta, err := statMeta(c.Path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrVerify, err)
	}
	if meta.Mode != c.Meta.Mode || meta.UID != c.Meta.UID || meta.GID != c.Meta.GID {
		return fmt.Errorf("%w: %s has owner %d:%d mode %s, want %d:%d mode %s", ErrVerify, c.Path,
			meta.UID, meta.GID, modeOctal(meta.Mode), c.Meta.UID, c.Meta.GID, modeOctal(c.Meta.Mode))
	}
	return nil
}

// quarantine moves one directory or file into the quarantine by rename:
// on the same file system, so it is all or nothing and costs no copy.
// The directories involved are synced by ds at the end of the batch.
func quarantine(mv ManifestMove, ds *dirSyncer) error {
	st, err := os.Lstat(mv.From)
	if err != nil {
		return fmt.Errorf("mailbox: quarantining %s: %w", mv.From, err)
	}
	if st.Mode()&os.ModeSymlink != 0 || st.IsDir() != mv.Dir {
		return fmt.Errorf("mailbox: quarantining %s: it changed type since it was planned; left in place", mv.From)
	}
	if _, err := os.Lstat(mv.To); err == nil {
		return fmt.Errorf("mailbox: quarantining %s: %s already exists; left in place", mv.From, mv.To)
	}
	if err := ds.mkdir(filepath.Dir(mv.To), 0o700); err != nil {
		return fmt.Errorf("mailbox: creating the quarantine for %s: %w", mv.From, err)
	}
	if err := os.Rename(mv.From, mv.To); err != nil {
		return fmt.Errorf("mailbox: moving %s to the quarantine: %w", mv.From, err)
	}
	ds.add(filepath.Dir(mv.From))
	ds.add(filepath.Dir(mv.To))
	return nil
}

// writeBackup writes copies of every file the plan changes, the
// manifest and checksums into a new backup directory, all synced, and
// only then gives the directory its final name: a backup either exists
// whole or is an abandoned ".partial" directory, and no change is made
// before it exists.
func (p *Plan) writeBackup(o ApplyOptions, now time.Time) (*Manifest, string, error) {
	base := now.UTC().Format("20060102T150405Z")
	id := base
	for n := 2; exists(filepath.Join(o.BackupDir, id)) || exists(filepath.Join(o.BackupDir, id+partial)); n++ {
		id = fmt.Sprintf("%s-%d", base, n)
	}
	final := filepath.Join(o.BackupDir, id)
	tmp := final + partial
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, "", fmt.Errorf("mailbox: creating the backup: %w", err)
	}
	m := &Manifest{Version: 1, ID: id, Created: now.UTC(), Layout: p.Source.Layout, Root: p.Source.Root,
		Home: p.Source.Home, Quarantine: filepath.Join(o.QuarantineDir, id)}
	for _, t := range p.Targets {
		m.Targets = append(m.Targets, t.String())
	}
	var sums strings.Builder
	var ds dirSyncer
	for _, c := range p.Changes {
		cp := copyName(c.Path)
		if err := ds.mkdir(filepath.Join(tmp, filepath.Dir(cp)), 0o700); err != nil {
			return nil, "", fmt.Errorf("mailbox: writing the backup: %w", err)
		}
		ds.add(filepath.Join(tmp, filepath.Dir(cp)))
		if err := writeSynced(filepath.Join(tmp, cp), c.Old, 0o600); err != nil {
			return nil, "", fmt.Errorf("mailbox: backing up %s: %w", c.Path, err)
		}
		mf := ManifestFile{Path: c.Path, Copy: cp, Size: int64(len(c.Old)), Mode: modeOctal(c.Meta.Mode),
			UID: c.Meta.UID, GID: c.Meta.GID, OldSHA256: sum(c.Old), NewSHA256: sum(c.New)}
		for _, r := range c.Removed {
			mf.Removed = append(mf.Removed, ManifestLine{Line: r.Line, Mailbox: r.Target.String()})
		}
		m.Files = append(m.Files, mf)
		fmt.Fprintf(&sums, "%s  %s\n", mf.OldSHA256, cp)
	}
	for _, mv := range p.movable() {
		to := filepath.Join(m.Quarantine, strings.TrimPrefix(filepath.Clean(mv.Path), string(filepath.Separator)))
		m.Moves = append(m.Moves, ManifestMove{From: mv.Path, To: to, Dir: mv.Dir, Mailbox: mv.Target.String(), What: mv.What})
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, "", fmt.Errorf("mailbox: encoding the manifest: %w", err)
	}
	if err := writeSynced(filepath.Join(tmp, manifestName), append(data, '\n'), 0o600); err != nil {
		return nil, "", fmt.Errorf("mailbox: writing the manifest: %w", err)
	}
	if err := writeSynced(filepath.Join(tmp, sumsName), []byte(sums.String()), 0o600); err != nil {
		return nil, "", fmt.Errorf("mailbox: writing the checksums: %w", err)
	}
	ds.add(tmp)
	if err := ds.sync(); err != nil {
		return nil, "", fmt.Errorf("mailbox: syncing the backup: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, "", fmt.Errorf("mailbox: completing the backup: %w", err)
	}
	if err := syncDir(o.BackupDir); err != nil {
		return nil, "", err
	}
	return m, final, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
