package adminapi

import (
	"context"
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/store"
)

func newServer() *Server { return NewServer(Options{Backend: adminapitest.New()}) }

func TestListenModeAndDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	path := filepath.Join(dir, "admin.sock")
	ln, err := newServer().Listen(path, 0o660, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode: got %v, want a socket with 0660", fi.Mode())
	}
	di, _ := os.Stat(dir)
	if di.Mode().Perm() != 0o750 {
		t.Errorf("created directory mode: got %v, want 0750", di.Mode().Perm())
	}
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
}

func TestListenOwnerAndGroup(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Skip("current group has no name:", err)
	}
	path := filepath.Join(t.TempDir(), "admin.sock")
	// The owner by numeric id, the group by name.
	ln, err := newServer().Listen(path, 0o600, u.Uid, g.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, _ := os.Lstat(path)
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o600 || itoa(st.Uid) != u.Uid || itoa(st.Gid) != u.Gid {
		t.Errorf("socket: mode %v uid %d gid %d", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	ln.Close()

	for _, tc := range []struct{ owner, group, want string }{
		{"no-such-user-mw", "", `owner "no-such-user-mw": no such user`},
		{"", "no-such-group-mw", `group "no-such-group-mw": no such group`},
		{"-5", "", "not a user id"},
	} {
		if _, err := newServer().Listen(path, 0o660, tc.owner, tc.group); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("owner %q group %q: got %v, want %q", tc.owner, tc.group, err, tc.want)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("owner %q group %q: a socket was left behind", tc.owner, tc.group)
		}
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// staleSocket leaves a socket file nobody listens on, as a daemon killed
// with SIGKILL does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

func TestListenReplacesOnlyStaleSockets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.sock")
	staleSocket(t, path)
	ln, err := newServer().Listen(path, 0o660, "", "")
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln.Close()
	// A socket that answers belongs to a running daemon.
	if _, err := newServer().Listen(path, 0o660, "", ""); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("live socket: got %v", err)
	}
	// A file that is not a socket is never removed.
	file := filepath.Join(dir, "notes.txt")
	os.WriteFile(file, []byte("keep me"), 0o600)
	if _, err := newServer().Listen(file, 0o660, "", ""); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: got %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("regular file was changed")
	}
}

func TestUnreachableDaemonMessages(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "admin.sock")
	_, err := Dial(missing).Freezes(context.Background())
	var ue *UnreachableError
	if !errors.As(err, &ue) || err.Error() != "cannot reach the mailwarden daemon at "+missing+
		": no such file — is mailwarden serve running? (the socket is admin.socket from the config, else admin.sock in data_dir; --config and --data select them)" {
		t.Errorf("missing socket: got %v", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	staleSocket(t, stale)
	_, err = Dial(stale).Latches(context.Background(), store.LatchFilter{})
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), stale+": connection refused — ") ||
		!strings.Contains(err.Error(), "is mailwarden serve running?") {
		t.Errorf("stale socket: got %v", err)
	}

	// Tests run as root, who may open any socket, so the mapping of a
	// refused open is checked directly, with the error net.Dial returns.
	g, err := user.LookupGroupId("0")
	if err != nil {
		t.Skip("group 0 has no name:", err)
	}
	os.Chown(stale, 0, 0)
	denied := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}
	want := "cannot reach the mailwarden daemon at " + stale + ": permission denied — run as root or a member of group " + g.Name
	if err := dialError(stale, denied); err.Error() != want || !errors.Is(err, syscall.EACCES) {
		t.Errorf("permission denied:\n got %v\nwant %s", err, want)
	}
}
