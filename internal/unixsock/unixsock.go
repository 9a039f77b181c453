// Package unixsock prepares unix socket paths for listening: the milter,
// the policy server and the admin API may all live on one.
package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// RemoveStale removes a socket file left by a daemon that died. It never
// removes a file that is not a socket, nor a socket that something still
// answers on (another daemon using the same path).
func RemoveStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; refusing to remove it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by a running process (is another mailwarden serve running?)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("checking whether %s is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}

// Listen opens a unix socket at path that is never reachable with a
// wider mode than mode, nor before it belongs to uid and gid (-1 leaves
// either as it is). A socket is created with the process umask, and the
// umask is process-wide, so it cannot be narrowed for one bind in a
// multi-threaded daemon; instead the socket is bound inside a new 0700
// directory beside path, where only this user can reach it, given its
// mode and owner there, and renamed into place (rename(2) is atomic).
// A stale socket at path is replaced as RemoveStale does. Closing the
// listener removes the socket at path.
func Listen(path string, mode os.FileMode, uid, gid int) (net.Listener, error) {
	if err := RemoveStale(path); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".sock-")
	if err != nil {
		return nil, fmt.Errorf("making a private directory for the socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The listener would unlink the name it was bound to; the socket
	// lives at path once renamed, so Close removes that instead.
	ln.SetUnlinkOnClose(false)
	fail := func(what string, err error) (net.Listener, error) {
		ln.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := os.Chmod(bound, mode); err != nil {
		return fail(fmt.Sprintf("setting mode %04o", mode), err)
	}
	if uid != -1 || gid != -1 {
		if err := os.Chown(bound, uid, gid); err != nil {
			hint := ""
			if errors.Is(err, syscall.EPERM) {
				hint = " (only root can give the socket to another owner or to a group it is not in)"
			}
			return fail(fmt.Sprintf("setting owner %d and group %d%s", uid, gid, hint), err)
		}
	}
	if err := os.Rename(bound, path); err != nil {
		return fail("moving the socket into place", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail("checking the socket", err)
	}
	return &listener{UnixListener: ln, path: path, fi: fi}, nil
}

// listener removes its socket file on Close, if the file at path is
// still the one it made.
type listener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
	once sync.Once
}

func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.path)
		}
	})
	return err
}
