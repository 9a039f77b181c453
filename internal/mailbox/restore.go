package mailbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrConflict: a file or directory changed since the removal, so restoring
// it would lose that change; --force restores anyway, keeping a copy.
var ErrConflict = errors.New("mailbox: changed since the removal")

// RestoreOptions configure a restore.
type RestoreOptions struct {
	// Force restores files that changed since the removal, after saving
	// their current content in the backup directory.
	Force bool
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// RestoreResult is what a restore did.
type RestoreResult struct {
	// Restored are files given back their old content; Unchanged files
	// already had it (the removal never reached them, or a restore ran).
	Restored, Unchanged []string
	// Untouched are files the removal recorded it did not edit (it
	// failed there) and that changed since: left as they are.
	Untouched []string
	// MovedBack are directories and files taken out of the quarantine.
	MovedBack []string
	// Saved are copies of files a forced restore overwrote.
	Saved []string
	// Conflicts are what could not be restored.
	Conflicts []string
}

// fileAction is what restoring one file takes.
type fileAction int

const (
	keep      fileAction = iota // already the old content
	putBack                     // the removal's content, or missing: write the old content
	overwrite                   // changed since: only with Force
)

// Restore puts back everything the removal with backup directory dir
// changed: every file's old content, with its owner and mode, and every
// quarantined directory. It checks the backup's copies against their
// checksums first, and refuses, changing nothing, when a file or
// directory changed since the removal, unless Force. It can be run
// again; what is already restored is left alone. It takes the same lock
// as a removal.
func Restore(dir string, o RestoreOptions) (*RestoreResult, error) {
	release, err := lockFile(filepath.Join(filepath.Dir(dir), lockName))
	if err != nil {
		return nil, err
	}
	defer release()
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	res := &RestoreResult{}
	untouched := readUntouched(dir)
	var changed []string // files: Force overwrites them, keeping a copy
	olds := make([][]byte, len(m.Files))
	actions := make([]fileAction, len(m.Files))
	for i, f := range m.Files {
		old, err := os.ReadFile(filepath.Join(dir, f.Copy))
		if err != nil {
			return nil, fmt.Errorf("mailbox: reading the backup copy of %s: %w", f.Path, err)
		}
		if sum(old) != f.OldSHA256 {
			return nil, fmt.Errorf("mailbox: the backup copy %s does not match its checksum; the backup is damaged, nothing was restored", filepath.Join(dir, f.Copy))
		}
		olds[i] = old
		cur, err := os.ReadFile(f.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			actions[i] = putBack
		case err != nil:
			return nil, fmt.Errorf("mailbox: reading %s: %w", f.Path, err)
		case sum(cur) == f.OldSHA256:
			actions[i] = keep
		case sum(cur) == f.NewSHA256:
			actions[i] = putBack
		case untouched[f.Path]:
			actions[i] = keep
			res.Untouched = append(res.Untouched, f.Path)
		default:
			actions[i] = overwrite
			changed = append(changed, fmt.Sprintf("%s changed since the removal", f.Path))
		}
	}
	backs := make([]bool, len(m.Moves))
	for i, mv := range m.Moves {
		from, to := exists(mv.From), exists(mv.To)
		switch {
		case to && !from:
			backs[i] = true
		case from && to:
			res.Conflicts = append(res.Conflicts, fmt.Sprintf("%s exists again and is also in the quarantine as %s; both left as they are", mv.From, mv.To))
		case !from && !to:
			res.Conflicts = append(res.Conflicts, fmt.Sprintf("%s is neither in place nor in the quarantine (%s)", mv.From, mv.To))
		}
	}
	if len(changed)+len(res.Conflicts) > 0 && !o.Force {
		res.Conflicts = append(changed, res.Conflicts...)
		return res, fmt.Errorf("%w; nothing was restored (--force restores the files anyway, saving their current content):\n%s",
			ErrConflict, strings.Join(res.Conflicts, "\n"))
	}
	stamp := now().UTC().Format("20060102T150405Z")
	for i, f := range m.Files {
		// A removal killed between writing and renaming leaves its
		// temporary file; it is of no use to anyone.
		os.Remove(filepath.Join(filepath.Dir(f.Path), tmpName(f.Path, m.ID)))
		switch actions[i] {
		case keep:
			if !slices.Contains(res.Untouched, f.Path) {
				res.Unchanged = append(res.Unchanged, f.Path)
			}
			continue
		case overwrite:
			saved, err := saveCurrent(dir, f.Path, stamp)
			if err != nil {
				return res, err
			}
			res.Saved = append(res.Saved, saved)
		}
		if err := restoreFile(f, olds[i], m.ID); err != nil {
			return res, err
		}
		res.Restored = append(res.Restored, f.Path)
	}
	var ds dirSyncer
	for i, mv := range m.Moves {
		if !backs[i] {
			continue
		}
		if err := os.Rename(mv.To, mv.From); err != nil {
			res.Conflicts = append(res.Conflicts, fmt.Sprintf("moving %s back to %s: %v", mv.To, mv.From, err))
			continue
		}
		ds.add(filepath.Dir(mv.From))
		ds.add(filepath.Dir(mv.To))
		res.MovedBack = append(res.MovedBack, mv.From)
	}
	if err := ds.sync(); err != nil {
		return res, fmt.Errorf("mailbox: syncing the moves back: %w", err)
	}
	if err := writeState(dir, StateRestored, now()); err != nil {
		return res, err
	}
	if len(res.Conflicts) > 0 {
		return res, fmt.Errorf("%w: restored what could be; left as they are:\n%s", ErrConflict, strings.Join(res.Conflicts, "\n"))
	}
	return res, nil
}

// restoreFile writes a file's old content back atomically with the owner
// and mode the manifest recorded.
func restoreFile(f ManifestFile, old []byte, id string) error {
	mode, err := parseModeOctal(f.Mode)
	if err != nil {
		return fmt.Errorf("mailbox: manifest entry for %s: %w", f.Path, err)
	}
	meta := fileMeta{Mode: mode, UID: f.UID, GID: f.GID}
	if err := replaceFile(f.Path, tmpName(f.Path, id), old, meta, nil); err != nil {
		return fmt.Errorf("mailbox: restoring %s: %w", f.Path, err)
	}
	got, err := os.ReadFile(f.Path)
	if err != nil || sum(got) != f.OldSHA256 {
		return fmt.Errorf("%w: %s does not read back as the backup after restoring it", ErrVerify, f.Path)
	}
	return nil
}

// saveCurrent keeps a file a forced restore is about to overwrite, in
// the backup directory under replaced-<time>/.
func saveCurrent(dir, path, stamp string) (string, error) {
	cur, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("mailbox: saving %s before restoring it: %w", path, err)
	}
	saved := filepath.Join(dir, "replaced-"+stamp, strings.TrimPrefix(copyName(path), filesDir+string(filepath.Separator)))
	if err := mkdirSynced(filepath.Dir(saved), 0o700); err != nil {
		return "", fmt.Errorf("mailbox: saving %s before restoring it: %w", path, err)
	}
	if err := writeNew(saved, cur, 0o600); err != nil {
		return "", fmt.Errorf("mailbox: saving %s before restoring it: %w", path, err)
	}
	return saved, nil
}
