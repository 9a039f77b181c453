//go:build unix

package mailbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

type owner struct {
	uid, gid   int
	nlink, ino uint64
	dev        uint64
}

func ownerOf(st fs.FileInfo) owner {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return owner{uid: -1, gid: -1}
	}
	return owner{uid: int(s.Uid), gid: int(s.Gid), nlink: uint64(s.Nlink), ino: uint64(s.Ino), dev: uint64(s.Dev)}
}

// chownLike gives f the owner uid:gid unless it has it already, so that
// a non-root run on its own files needs no privilege.
func chownLike(f *os.File, uid, gid int) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if o := ownerOf(st); o.uid == uid && o.gid == gid {
		return nil
	}
	return f.Chown(uid, gid)
}

// ErrLocked is returned when another removal or restore holds the lock.
var ErrLocked = errors.New("mailbox: another removal or restore is running")

// lockFile takes an exclusive flock on path, creating it, without
// waiting. The kernel drops the lock when the process dies, so a killed
// run never leaves a stale lock.
func lockFile(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("mailbox: opening lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s is locked)", ErrLocked, path)
		}
		return nil, fmt.Errorf("mailbox: locking %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
