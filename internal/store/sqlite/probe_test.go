package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/writefail"
)

// cannot skips a test that needs root or a kernel feature, or fails it
// under CI=true, where a skipped test would hide a broken runner.
func cannot(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (a skipped test under CI=true is a failure)", msg)
	}
	t.Skip(msg)
}

// smallTmpfs mounts a tmpfs of size bytes for the test and unmounts it
// when the test ends: a filesystem the test can fill without touching
// the machine's disks.
func smallTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		cannot(t, "mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		cannot(t, "mounting a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting the tmpfs %s: %v", dir, err)
		}
	})
	return dir
}

// fillUp writes a file in dir until the filesystem is full and returns
// its path; removing it frees the space.
func fillUp(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
			}
			return path
		}
	}
}

// logLines collects what a logger writes, one string per line.
type logLines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// matching returns the lines holding every part.
func (l *logLines) matching(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.b.String()) {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

func probeTriplet(i int) store.Triplet {
	now := time.Now().Truncate(time.Millisecond)
	return store.Triplet{Client: fmt.Sprintf("192.0.2.%d/32", i%250), Sender: "a@example.org",
		Recipient: fmt.Sprintf("u%d@example.net", i), FirstSeen: now, LastSeen: now, Attempts: 1,
		Expires: now.Add(time.Hour)}
}

// TestProbeDiskFull fills the filesystem under an open store: the probe
// fails, the write-behind triplets and events that fail are counted by
// kind and logged as one line rather than one each, and the probe
// passes again once the space is freed.
func TestProbeDiskFull(t *testing.T) {
	dir := smallTmpfs(t, 2<<20)
	var logs logLines
	s, err := OpenWith(dir, slog.New(slog.NewTextHandler(&logs, nil)), Options{Mirror: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("Probe on a healthy store: %v", err)
	}

	filler := fillUp(t, dir)
	err = s.Probe(ctx)
	if err == nil {
		t.Fatal("Probe succeeded on a full filesystem")
	}
	t.Logf("probe on a full disk: %v", err)
	const lost = 50
	for i := range lost {
		if err := s.PutTriplet(ctx, probeTriplet(i)); err != nil {
			t.Fatalf("PutTriplet: %v", err)
		}
		if err := s.AppendEvents(ctx, store.Event{Time: time.Now(), Kind: store.EventGreylist}); err != nil {
			t.Fatalf("AppendEvents: %v", err)
		}
	}
	// The flush waits for the writes queued before it, and fails with them.
	_ = s.w.flush(ctx)
	got := s.WriteFailures()
	if got[writeTriplet] != lost || got[writeEvent] != lost {
		t.Errorf("WriteFailures = %v, want %d triplets and %d events", got, lost, lost)
	}
	if got[writeLatch] != 0 || len(got) != len(writefail.Kinds) {
		t.Errorf("WriteFailures = %v, want every kind listed and no latch failure", got)
	}
	warned := logs.matching("level=WARN", "store write")
	if len(warned) != 1 {
		t.Errorf("%d warnings for %d failed writes, want 1 now and a summary later:\n%s", len(warned), 2*lost, warned)
	}
	t.Logf("failed writes %v; warnings logged: %d", got, len(warned))

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("Probe after the space was freed: %v", err)
	}
	tr := probeTriplet(999)
	if err := s.PutTriplet(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if err := s.w.flush(ctx); err != nil {
		t.Fatalf("writing after the space was freed: %v", err)
	}
	if n := s.WriteFailures()[writeTriplet]; n != lost {
		t.Errorf("triplet failures after recovery = %d, want still %d", n, lost)
	}
}

// TestProbeImmutableFiles makes the database files immutable under an
// open store (chattr +i, which stops root too): the probe fails until
// the flag is lifted.
func TestProbeImmutableFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		cannot(t, "chattr +i needs root")
	}
	dir := t.TempDir()
	s := openMirror(t, dir)
	ctx := context.Background()
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("Probe on a healthy store: %v", err)
	}
	files := []string{filepath.Join(dir, FileName), filepath.Join(dir, FileName+"-wal")}
	chattr := func(flag string) error {
		out, err := exec.Command("chattr", append([]string{flag}, files...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("chattr %s: %v: %s", flag, err, out)
		}
		return nil
	}
	if err := chattr("+i"); err != nil {
		cannot(t, "this filesystem does not take the immutable flag: %v", err)
	}
	t.Cleanup(func() {
		if err := chattr("-i"); err != nil {
			t.Error(err)
		}
	})
	err := s.Probe(ctx)
	if err == nil {
		t.Fatal("Probe succeeded with the database files immutable")
	}
	t.Logf("probe with immutable files: %v", err)
	if err := chattr("-i"); err != nil {
		t.Fatal(err)
	}
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("Probe after chattr -i: %v", err)
	}
}

// TestProbeDirectoryRemoved removes the data directory under an open
// store. Writes still succeed, into files nobody will open again; the
// probe must say so.
func TestProbeDirectoryRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openMirror(t, dir)
	ctx := context.Background()
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("Probe on a healthy store: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	err := s.Probe(ctx)
	if err == nil {
		t.Fatal("Probe succeeded with the data directory removed")
	}
	if !strings.Contains(err.Error(), "removed") {
		t.Errorf("Probe error %q does not say the file was removed", err)
	}
}

func TestProbeClosed(t *testing.T) {
	s := openTest(t, t.TempDir())
	s.Close()
	if err := s.Probe(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Probe on a closed store: %v, want ErrClosed", err)
	}
}
