package mailbox

import (
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// fileMeta is what a rewrite keeps (owner and mode) and what shows that a
// file changed behind our back (size, modification time, inode).
type fileMeta struct {
	Size     int64
	Mode     fs.FileMode
	UID, GID int
	ModTime  time.Time
	Ino      uint64
}

// keptModeBits are the mode bits a rewrite carries over.
const keptModeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// statMeta describes the file at path, refusing what a rename would not
// replace faithfully: a symbolic link (the link would become a file),
// anything but a regular file, and a file with other hard links (they
// would keep the old content).
func statMeta(path string) (fileMeta, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return fileMeta{}, err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return fileMeta{}, fmt.Errorf("%s is a symbolic link; edit the file it points to instead", path)
	}
	if !st.Mode().IsRegular() {
		return fileMeta{}, fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	o := ownerOf(st)
	if o.nlink > 1 {
		return fileMeta{}, fmt.Errorf("%s has %d hard links; rewriting it would leave the others with the old content", path, o.nlink)
	}
	return fileMeta{Size: st.Size(), Mode: st.Mode() & keptModeBits, UID: o.uid, GID: o.gid,
		ModTime: st.ModTime(), Ino: o.ino}, nil
}

// same reports whether two descriptions show the same, unchanged file.
func (m fileMeta) same(o fileMeta) bool {
	return m.Size == o.Size && m.ModTime.Equal(o.ModTime) && m.Ino == o.Ino
}

// replaceFile writes data over path atomically, the way chasquid's
// safeio does: a temporary file named tmpName in the same directory,
// given path's owner and mode, synced; then check (which must confirm
// that path is still as planned), a rename over path, and a sync of the
// directory so the rename survives a crash. Either path keeps its old
// content or it has all of data; never anything in between.
func replaceFile(path, tmpName string, data []byte, meta fileMeta, check func() error) (err error) {
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, tmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	// Owner first: chown clears the set-id bits chmod then restores.
	if err := chownLike(f, meta.UID, meta.GID); err != nil {
		return fmt.Errorf("keeping the owner %d:%d: %w", meta.UID, meta.GID, err)
	}
	if err := f.Chmod(meta.Mode); err != nil {
		return fmt.Errorf("keeping the mode %04o: %w", meta.Mode, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming over %s: %w", path, err)
	}
	renamed = true
	return syncDir(dir)
}

// writeNew writes a file of our own (a backup copy, a manifest, a
// snapshot) atomically with mode perm.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a directory's entries (a rename, a new file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening directory %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// mkdirSynced creates dir and its missing parents with mode perm and
// syncs each parent, so the new entries survive a crash.
func mkdirSynced(dir string, perm fs.FileMode) error {
	var ds dirSyncer
	if err := ds.mkdir(dir, perm); err != nil {
		return err
	}
	return ds.sync()
}

// dirSyncer collects directories whose entries changed, to sync each
// once at the end of a batch (hundreds of moves need not cost thousands
// of syncs; each rename is atomic on its own).
type dirSyncer struct {
	dirs map[string]bool
}

// add notes that dir's entries changed.
func (ds *dirSyncer) add(dir string) {
	if ds.dirs == nil {
		ds.dirs = map[string]bool{}
	}
	ds.dirs[filepath.Clean(dir)] = true
}

// mkdir creates dir and its missing parents, noting each parent.
func (ds *dirSyncer) mkdir(dir string, perm fs.FileMode) error {
	st, err := os.Stat(dir)
	if err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := ds.mkdir(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, perm); err != nil && !os.IsExist(err) {
		return err
	}
	ds.add(parent)
	return nil
}

// sync syncs every noted directory, deepest first.
func (ds *dirSyncer) sync() error {
	dirs := make([]string, 0, len(ds.dirs))
	for d := range ds.dirs {
		dirs = append(dirs, d)
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	ds.dirs = nil
	return nil
}

// writeSynced creates a new file (never overwriting one) and syncs it;
// its directory is left to the caller's dirSyncer.
func writeSynced(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
