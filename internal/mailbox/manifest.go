package mailbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Names inside a backup directory.
const (
	manifestName = "MANIFEST"
	sumsName     = "SHA256SUMS"
	stateName    = "STATE"
	filesDir     = "files"
	partial      = ".partial"
	lockName     = "lock"
)

// Backup states, the first word of the STATE file.
const (
	StateApplying   = "applying"   // edits under way, or the run was killed
	StateComplete   = "complete"   // every change made and verified
	StateIncomplete = "incomplete" // finished with failures; see STATE
	StateRestored   = "restored"
)

// Manifest describes one removal: every file it changes, with owner,
// mode and checksums before and after, and every directory it moves to
// the quarantine. It is written, with copies of the files, before the
// first change is made.
type Manifest struct {
	Version int       `json:"version"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Layout  string    `json:"layout"`
	Root    string    `json:"root,omitempty"`
	Home    string    `json:"home,omitempty"`
	// Quarantine is this removal's directory in the quarantine.
	Quarantine string         `json:"quarantine"`
	Targets    []string       `json:"targets"`
	Files      []ManifestFile `json:"files"`
	Moves      []ManifestMove `json:"moves"`
}

// ManifestFile is one changed file.
type ManifestFile struct {
	Path string `json:"path"`
	// Copy is the backup copy, relative to the backup directory.
	Copy      string         `json:"copy"`
	Size      int64          `json:"size"`
	Mode      string         `json:"mode"` // octal, as chmod takes it
	UID       int            `json:"uid"`
	GID       int            `json:"gid"`
	OldSHA256 string         `json:"sha256_old"`
	NewSHA256 string         `json:"sha256_new"`
	Removed   []ManifestLine `json:"removed"`
}

// ManifestLine is one line a removal took out (the line itself is in
// the copy; passwords are not repeated here).
type ManifestLine struct {
	Line    int    `json:"line"`
	Mailbox string `json:"mailbox"`
}

// ManifestMove is one directory or file moved to the quarantine.
type ManifestMove struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Dir     bool   `json:"dir"`
	Mailbox string `json:"mailbox"`
	What    string `json:"what"`
}

func sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// modeOctal renders mode bits as chmod's octal, set-id bits included.
func modeOctal(m fs.FileMode) string {
	n := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n |= 0o1000
	}
	return fmt.Sprintf("%04o", n)
}

// parseModeOctal is the inverse of modeOctal.
func parseModeOctal(s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("bad mode %q", s)
	}
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

// copyName is where the backup keeps a copy of path: its absolute path
// under files/, so that an administrator can find it by hand.
func copyName(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return filepath.Join(filesDir, strings.TrimPrefix(filepath.Clean(abs), string(filepath.Separator)))
}

// ReadManifest reads the manifest of the backup in dir.
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, fmt.Errorf("mailbox: reading the backup's manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("mailbox: %s: %w", filepath.Join(dir, manifestName), err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("mailbox: %s: unknown manifest version %d", filepath.Join(dir, manifestName), m.Version)
	}
	for _, f := range m.Files {
		if !filepath.IsAbs(f.Path) || !filepath.IsLocal(f.Copy) {
			return nil, fmt.Errorf("mailbox: %s: bad file entry %q -> %q", filepath.Join(dir, manifestName), f.Path, f.Copy)
		}
	}
	return &m, nil
}

// readState returns a backup's state line ("" if none).
func readState(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, stateName))
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSpace(first)
}

// untouchedPrefix starts the STATE lines naming files a finished
// removal did not edit (a failure, or a failure elsewhere in the domain).
const untouchedPrefix = "untouched "

// readUntouched returns the files a finished removal did not edit.
func readUntouched(dir string) map[string]bool {
	data, _ := os.ReadFile(filepath.Join(dir, stateName))
	out := map[string]bool{}
	for line := range strings.Lines(string(data)) {
		if p, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), untouchedPrefix); ok {
			out[p] = true
		}
	}
	return out
}

// writeState records a backup's state, and for a finished removal the
// files it left untouched, so that a restore leaves those alone.
func writeState(dir, state string, now time.Time, untouched ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", state, now.UTC().Format(time.RFC3339))
	for _, p := range untouched {
		b.WriteString(untouchedPrefix + p + "\n")
	}
	if err := writeNew(filepath.Join(dir, stateName), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("mailbox: recording the backup's state: %w", err)
	}
	return nil
}

// BackupInfo describes one backup for "mailbox backups".
type BackupInfo struct {
	ID      string
	Dir     string
	Created time.Time
	// State is the STATE line; "abandoned" for a backup a killed run
	// never finished writing (nothing was changed then).
	State            string
	Files, Lines     int
	Moves, Mailboxes int
}

// ListBackups lists the backups in backupDir, oldest first.
func ListBackups(backupDir string) ([]BackupInfo, error) {
	entries, err := os.ReadDir(backupDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: listing backups: %w", err)
	}
	var out []BackupInfo
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(backupDir, e.Name())
		if strings.HasSuffix(e.Name(), partial) {
			out = append(out, BackupInfo{ID: e.Name(), Dir: dir, State: "abandoned before any change"})
			continue
		}
		m, err := ReadManifest(dir)
		if err != nil {
			continue // not a backup
		}
		b := BackupInfo{ID: m.ID, Dir: dir, Created: m.Created, State: readState(dir),
			Files: len(m.Files), Moves: len(m.Moves), Mailboxes: len(m.Targets)}
		for _, f := range m.Files {
			b.Lines += len(f.Removed)
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b BackupInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// FindBackup resolves what an administrator typed: "latest", a backup
// ID in backupDir, or a backup directory's path.
func FindBackup(backupDir, name string) (string, error) {
	if name == "latest" {
		list, err := ListBackups(backupDir)
		if err != nil {
			return "", err
		}
		for i := len(list) - 1; i >= 0; i-- {
			if !strings.HasSuffix(list[i].ID, partial) {
				return list[i].Dir, nil
			}
		}
		return "", fmt.Errorf("mailbox: no backups in %s", backupDir)
	}
	dir := name
	if !strings.ContainsRune(name, filepath.Separator) {
		dir = filepath.Join(backupDir, name)
	}
	if strings.HasSuffix(dir, partial) {
		return "", fmt.Errorf("mailbox: %s was abandoned before any change was made; there is nothing to restore", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, manifestName)); err != nil {
		return "", fmt.Errorf("mailbox: %s is not a backup: %w", dir, err)
	}
	return dir, nil
}
