package adminapi

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// peerCred returns the uid and gid of the process on the other end of
// c, as the kernel recorded them at connect time (SO_PEERCRED, unix(7)).
func peerCred(c net.Conn) (uid, gid int, err error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, -1, fmt.Errorf("adminapi: peer credentials: %T is not a unix socket connection", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, -1, fmt.Errorf("adminapi: peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return -1, -1, fmt.Errorf("adminapi: peer credentials: %w", err)
	}
	if cerr != nil {
		return -1, -1, fmt.Errorf("adminapi: peer credentials: %w", cerr)
	}
	return int(cred.Uid), int(cred.Gid), nil
}

// fileOwner returns the uid and gid that own path.
func fileOwner(path string) (uid, gid int, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return -1, -1, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, -1, fmt.Errorf("adminapi: no owner for %s", path)
	}
	return int(st.Uid), int(st.Gid), nil
}

// socketGroup names the group that owns path, or else its directory
// (which may be what the CLI cannot enter), for the hint when the CLI may
// not open the socket; "" if it cannot be told.
func socketGroup(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		if fi, err = os.Stat(filepath.Dir(path)); err != nil {
			return ""
		}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	gid := strconv.FormatUint(uint64(st.Gid), 10)
	if g, err := user.LookupGroupId(gid); err == nil {
		return g.Name
	}
	return gid
}
