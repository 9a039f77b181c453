package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()

	if err := RemoveStale(filepath.Join(dir, "missing.sock")); err != nil {
		t.Errorf("missing path: %v", err)
	}

	file := filepath.Join(dir, "config.yaml")
	os.WriteFile(file, []byte("keep me"), 0o600)
	if err := RemoveStale(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: err = %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("a regular file was touched")
	}

	live := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := RemoveStale(live); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("live socket: err = %v, want in use", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	l2, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l2.(*net.UnixListener).SetUnlinkOnClose(false)
	l2.Close()
	if err := RemoveStale(stale); err != nil {
		t.Errorf("stale socket: %v", err)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("stale socket still there: %v", err)
	}
}

// TestListenNeverWider: under umask 000, a socket bound and then chmod-ed
// is briefly open to everyone (issue 19: user nobody reached the admin
// API in that window). Listen's socket must never be seen at path with
// a mode wider than asked, nor with another owner than asked.
func TestListenNeverWider(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.sock")
	stop := make(chan struct{})
	seen := make(chan os.FileMode, 1)
	go func() {
		defer close(seen)
		var worst os.FileMode
		for {
			select {
			case <-stop:
				seen <- worst
				return
			default:
			}
			if fi, err := os.Lstat(path); err == nil {
				worst |= fi.Mode().Perm()
			}
		}
	}()
	for range 300 {
		ln, err := Listen(path, 0o600, -1, -1)
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
	}
	close(stop)
	if worst := <-seen; worst&^0o600 != 0 {
		t.Errorf("the socket was seen at %s with mode bits %04o, want at most 0600", path, worst)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		t.Errorf("left behind in the socket's directory: %s", e.Name())
	}
}

func TestListenModeOwnerAndClose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.sock")
	ln, err := Listen(path, 0o640, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o640 {
		t.Fatalf("socket at %s: %v %v, want a socket with 0640", path, fi, err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("connecting to the renamed socket: %v", err)
	}
	c.Close()
	if _, err := Listen(path, 0o640, -1, -1); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Listen on a live socket: %v", err)
	}
	ln.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
	// Close removes only its own socket: one made since at the same path
	// by someone else stays.
	ln2, err := Listen(path, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ln2.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close removed a socket it did not make: %v", err)
	}
}
