package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"strings"
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
