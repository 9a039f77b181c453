//go:build !unix

package mailbox

import (
	"errors"
	"io/fs"
	"os"
)

type owner struct {
	uid, gid   int
	nlink, ino uint64
	dev        uint64
}

func ownerOf(fs.FileInfo) owner { return owner{uid: -1, gid: -1} }

func chownLike(*os.File, int, int) error { return nil }

// ErrLocked is returned when another removal or restore holds the lock.
var ErrLocked = errors.New("mailbox: another removal or restore is running")

func lockFile(string) (func(), error) {
	return nil, errors.New("mailbox: removal needs flock, which this system lacks")
}
