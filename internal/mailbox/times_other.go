//go:build !linux

package mailbox

import (
	"os"
	"path/filepath"
	"time"
)

// fileTimes returns path's modification time; birth times are read on
// Linux only. Symbolic links are not followed.
func fileTimes(path string) (mtime, btime time.Time, isDir bool, err error) {
	st, err := os.Lstat(path)
	if err != nil {
		return time.Time{}, time.Time{}, false, err
	}
	return st.ModTime(), time.Time{}, st.IsDir(), nil
}

// createdIn returns a function giving created() for entries of dir.
func createdIn(dir string) (func(name string) time.Time, func()) {
	return func(name string) time.Time { return created(filepath.Join(dir, name)) }, func() {}
}
