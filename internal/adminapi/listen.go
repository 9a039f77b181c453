package adminapi

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"mailwarden/internal/unixsock"
)

// Listen opens the admin socket at path: it creates the parent directory
// (0750) if missing, replaces a stale socket left by a daemon that died,
// and gives the socket mode and, if set, owner and group (names or
// numeric ids). Whoever can open the socket administers mailwarden, so
// the socket is never reachable before its mode and owner are set
// (unixsock.Listen), and any failure to set them closes it again.
func (s *Server) Listen(path string, mode os.FileMode, owner, group string) (net.Listener, error) {
	uid, gid, err := LookupOwner(owner, group)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := ensureDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ln, err := unixsock.Listen(path, mode, uid, gid)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	// Whoever owns the socket now, by admin.owner and admin.group or by
	// default, is who the API lets in besides root and the daemon.
	ouid, ogid, err := fileOwner(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: reading its owner: %w", path, err)
	}
	s.owners.Store(&socketOwners{uid: ouid, gid: ogid})
	s.log.Info("admin API listening", "socket", path, "mode", fmt.Sprintf("%04o", mode), "owner", owner, "group", group)
	return ln, nil
}

// LookupOwner resolves owner and group names or numeric ids; "" is -1,
// which os.Chown leaves unchanged.
func LookupOwner(owner, group string) (uid, gid int, err error) {
	if uid, err = lookupID("owner", "user", owner, user.Lookup, func(u *user.User) string { return u.Uid }); err != nil {
		return -1, -1, err
	}
	if gid, err = lookupID("group", "group", group, user.LookupGroup, func(g *user.Group) string { return g.Gid }); err != nil {
		return -1, -1, err
	}
	return uid, gid, nil
}

// lookupID resolves s, a name or a numeric id; "" is -1. setting and
// kind ("owner", "user") name it in an error.
func lookupID[T any](setting, kind, s string, lookup func(name string) (*T, error), id func(*T) string) (int, error) {
	if s == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return -1, fmt.Errorf("%s %q is not a %s id", setting, s, kind)
		}
		return n, nil
	}
	found, err := lookup(s)
	if err != nil {
		return -1, fmt.Errorf("%s %q: no such %s: %w", setting, s, kind, err)
	}
	n, _ := strconv.Atoi(id(found))
	return n, nil
}

// ensureDir creates dir with mode 0750 if it does not exist; an existing
// directory keeps the mode its owner gave it.
func ensureDir(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("creating directory: %w", err)
	}
	// MkdirAll's mode is reduced by the umask; say exactly what we mean.
	return os.Chmod(dir, 0o750)
}
