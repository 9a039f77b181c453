package mailbox

import (
	"time"

	"golang.org/x/sys/unix"
)

const statxMask = unix.STATX_TYPE | unix.STATX_MTIME | unix.STATX_BTIME

// fileTimes returns path's modification time and, when the file system
// records it (ext4, xfs, btrfs), its birth time; symbolic links are not
// followed.
func fileTimes(path string) (mtime, btime time.Time, isDir bool, err error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, statxMask, &st); err != nil {
		return time.Time{}, time.Time{}, false, err
	}
	mtime, btime, isDir = statxTimes(&st)
	return mtime, btime, isDir, nil
}

func statxTimes(st *unix.Statx_t) (mtime, btime time.Time, isDir bool) {
	mtime = time.Unix(st.Mtime.Sec, int64(st.Mtime.Nsec))
	if st.Mask&unix.STATX_BTIME != 0 && st.Btime.Sec != 0 {
		btime = time.Unix(st.Btime.Sec, int64(st.Btime.Nsec))
	}
	return mtime, btime, st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// createdIn returns a function giving created() for entries of dir, and
// a function to release it. Looking names up relative to the opened
// directory saves resolving the whole path for each of a domain's boxes.
func createdIn(dir string) (func(name string) time.Time, func()) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return func(string) time.Time { return time.Time{} }, func() {}
	}
	var st unix.Statx_t
	return func(name string) time.Time {
		if err := unix.Statx(fd, name, unix.AT_SYMLINK_NOFOLLOW, statxMask, &st); err != nil {
			return time.Time{}
		}
		return earliest(statxTimes(&st))
	}, func() { unix.Close(fd) }
}
