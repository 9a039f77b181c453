package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Tmpfs mounts a tmpfs of size bytes for the test and returns its
// directory: a filesystem the test can fill to ENOSPC without touching
// the machine's disks. It is unmounted when the test ends, after the
// cleanups registered later (a daemon started on it is stopped first).
// It needs root; without it the test skips, or fails under CI=true.
func Tmpfs(t testing.TB, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "mounting a tmpfs needs root")
	}
	dir := filepath.Join(InstanceDir(t, "tmpfs"), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		SkipOrFail(t, "mounting a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		// A process that has only just exited may still hold a file.
		var err error
		for range 50 {
			if err = syscall.Unmount(dir, 0); !errors.Is(err, syscall.EBUSY) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("unmounting the tmpfs %s: %v; detaching it", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// FillUp writes a file in dir until its filesystem is full and returns
// the file's path; removing the file frees the space again.
func FillUp(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("filling %s: %v", dir, err)
	}
	defer f.Close()
	block := make([]byte, 64<<10)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
			}
			break
		}
	}
	// A last partial block may leave a few bytes free.
	small := make([]byte, 512)
	for {
		if _, err := f.Write(small); err != nil {
			return path
		}
	}
}
