package sqlite

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// anonMemory is the process's anonymous resident memory once the Go
// heap has been collected and its free pages returned, so that what
// changes between two readings is mostly SQLite's: modernc's SQLite
// allocates its caches outside the Go heap, and its build leaves out
// SQLite's own memory statistics.
func anonMemory(t *testing.T) int64 {
	t.Helper()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("reading this process's memory: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("RssAnon line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no RssAnon in /proc/self/status")
	return 0
}

// TestReleaseMemory runs releaseMemoryCheck in a child process of its
// own: SQLite's allocator keeps freed regions for reuse, so the stores
// of the tests before it would blur the figures.
func TestReleaseMemory(t *testing.T) {
	if os.Getenv("MAILWARDEN_RELEASE_CHILD") == "1" {
		releaseMemoryCheck(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReleaseMemory$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "MAILWARDEN_RELEASE_CHILD=1")
	out, err := cmd.CombinedOutput()
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "release_test.go") {
			t.Log(strings.TrimSpace(line))
		}
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: TestReleaseMemory") {
		t.Fatalf("the child test failed (%v):\n%s", err, out)
	}
}

func releaseMemoryCheck(t *testing.T) {
	ctx := context.Background()
	s := openWith(t, t.TempDir(), Options{Mirror: true})
	before := anonMemory(t)
	now := time.Now()
	for i := range 50000 {
		tr := store.Triplet{Client: fmt.Sprintf("10.%d.%d.0/24", i/250, i%250), Sender: fmt.Sprintf("s%d@example.org", i),
			Recipient: fmt.Sprintf("r%d@example.net", i), FirstSeen: now, LastSeen: now, Expires: now.Add(time.Hour)}
		if err := s.PutTriplet(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ListTriplets(ctx, store.TripletFilter{}, now); err != nil {
		t.Fatal(err)
	}
	full := anonMemory(t)
	if full-before < 4<<20 {
		t.Fatalf("the process holds only %d KB more after 50,000 triplets; the test no longer fills SQLite's caches", (full-before)>>10)
	}
	if err := s.ReleaseMemory(ctx); err != nil {
		t.Fatalf("ReleaseMemory: %v", err)
	}
	after := anonMemory(t)
	t.Logf("anonymous memory: %d KB at open, %d KB with full caches, %d KB after ReleaseMemory", before>>10, full>>10, after>>10)
	// The writer's cache alone holds its 8 MiB by now.
	if freed := full - after; freed < 4<<20 {
		t.Errorf("ReleaseMemory freed %d KB of the %d KB the process had grown by, want at least 4096", freed>>10, (full-before)>>10)
	}

	tr := store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "b@example.net",
		FirstSeen: now, LastSeen: now, Expires: now.Add(time.Hour)}
	if err := s.PutTriplet(ctx, tr); err != nil {
		t.Fatalf("PutTriplet after ReleaseMemory: %v", err)
	}
	got, err := s.ListTriplets(ctx, store.TripletFilter{Client: "10.3.7.0/24"}, now)
	if err != nil || len(got) != 1 || got[0].Recipient != "r757@example.net" {
		t.Fatalf("ListTriplets after ReleaseMemory: %v, %v; want r757@example.net", got, err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseMemory(ctx); err != ErrClosed {
		t.Fatalf("ReleaseMemory on a closed store: %v, want ErrClosed", err)
	}
}
