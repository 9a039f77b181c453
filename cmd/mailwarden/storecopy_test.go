package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/store"
	"mailwarden/internal/store/backend"
	redisstore "mailwarden/internal/store/redis"
	"mailwarden/internal/store/redis/redistest"
	"mailwarden/internal/store/sqlite"
)

// TestStoreCopy copies a SQLite store with latches, users and events
// into a new directory, and the reads that need no daemon show the same
// data from the copy.
func TestStoreCopy(t *testing.T) {
	src := t.TempDir()
	initStore(t, src)
	const pw = "a long enough password"
	if code, _, stderr := userRun(t, pw+"\n", "add", "--data", src, "--role", "admin", "--password-stdin", "alice"); code != 0 {
		t.Fatalf("user add: %s", stderr)
	}
	ctx := context.Background()
	now := time.Now()
	st := openData(t, src)
	l, err := st.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "sender_domain", Reason: "x"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddLatch(ctx, store.Latch{Kind: store.LatchUser, Key: "bob", Rule: "rate_user"}, now); err != nil {
		t.Fatal(err)
	}
	if err := st.PutTriplet(ctx, store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "b@school.test",
		FirstSeen: now, LastSeen: now, Attempts: 1, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := st.AppendEvents(ctx, store.Event{Time: now, Kind: store.EventReject, Client: "10.1.2.3", Reason: "spam"}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	dst := filepath.Join(t.TempDir(), "copy")
	// Without --yes it only counts.
	code, stdout, stderr := runCmd("store", "copy", "--from", "sqlite:"+src, "--to", dst)
	if code != 0 || !strings.Contains(stdout, "would copy 7 records") || !strings.Contains(stdout, "run again with --yes") {
		t.Fatalf("store copy without --yes: code %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("a dry run made %s: %v", dst, err)
	}

	code, stdout, stderr = runCmd("store", "copy", "--from", src, "--to", "sqlite:"+dst, "--yes")
	if code != 0 || !strings.Contains(stdout, "verified") || strings.Contains(stdout, "MISMATCH") {
		t.Fatalf("store copy: code %d\n%s%s", code, stdout, stderr)
	}
	for _, name := range []string{sqlite.FileName, backend.MarkerName} {
		if _, err := os.Stat(filepath.Join(dst, name)); err != nil {
			t.Errorf("the copy has no %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, stagingName)); !os.IsNotExist(err) {
		t.Errorf("the staging directory is left behind: %v", err)
	}

	for _, args := range [][]string{{"user", "list"}, {"greylist", "list"}} {
		_, want, _ := runCmd(append(args, "--data", src)...)
		code, got, stderr := runCmd(append(args, "--data", dst)...)
		if code != 0 || got != want {
			t.Errorf("%s on the copy: code %d, %s\ngot\n%s\nwant\n%s", strings.Join(args, " "), code, stderr, got, want)
		}
	}
	cp := openData(t, dst)
	got, err := cp.GetLatch(ctx, l.ID)
	if err != nil || got.Key != "10.1.2.3" || !got.LastSeen.Equal(l.LastSeen) {
		t.Errorf("latch %s in the copy = %+v, %v", l.ID, got, err)
	}
	// The copy's audit trail ends with the copy.
	evs := adminEvents(t, cp)
	if len(evs) == 0 || evs[0].Check != "store copy" || !strings.Contains(evs[0].Reason, "verified") {
		t.Errorf("newest admin event of the copy = %+v; want the copy", evs[:min(1, len(evs))])
	}
	// The source is unchanged: no copy event there.
	if evs := adminEvents(t, openData(t, src)); len(evs) == 0 || evs[0].Check == "store copy" {
		t.Errorf("the source's admin events = %+v; want them untouched", evs)
	}
	cp.Close()

	// config:FILE names the store a config names: the way a Redis
	// store is named, and a SQLite one works the same.
	cfgFile := filepath.Join(t.TempDir(), "mailwarden.yaml")
	third := filepath.Join(t.TempDir(), "third")
	if err := os.WriteFile(cfgFile, []byte("data_dir: "+third+"\nstore:\n  backend: sqlite\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCmd("store", "copy", "--from", dst, "--to", "config:"+cfgFile, "--yes")
	if code != 0 || !strings.Contains(stdout, "verified") {
		t.Fatalf("store copy --to config:FILE: code %d\n%s%s", code, stdout, stderr)
	}
	if code, got, _ := runCmd("user", "list", "--config", cfgFile); code != 0 || !strings.Contains(got, "alice") {
		t.Errorf("user list on the copy of the copy: code %d\n%s", code, got)
	}

	// A second copy into the same directory is refused.
	code, _, stderr = runCmd("store", "copy", "--from", src, "--to", dst, "--yes")
	if code != 1 || !strings.Contains(stderr, "already holds a store") {
		t.Errorf("store copy into a store: code %d, stderr %q", code, stderr)
	}
}

func TestStoreCopyRefusals(t *testing.T) {
	src := t.TempDir()
	initStore(t, src)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--from", src}, 2, "--from and --to are both required"},
		{[]string{"--from", src, "--to", "sqlite:" + src}, 2, "the same store"},
		{[]string{"--from", src, "--to", "redis://127.0.0.1:6379/notanumber"}, 2, "invalid database number"},
		{[]string{"--from", filepath.Join(t.TempDir(), "none"), "--to", t.TempDir()}, 1, "no store"},
	} {
		code, _, stderr := runCmd(append([]string{"store", "copy"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("store copy %s: code %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.want)
		}
	}

	// A store whose daemon runs changes while it is read.
	serveAdmin(t, src, adminapi.Options{})
	code, _, stderr := runCmd("store", "copy", "--from", src, "--to", filepath.Join(t.TempDir(), "copy"), "--yes")
	if code != 1 || !strings.Contains(stderr, "daemon is running") {
		t.Errorf("store copy from a running daemon's store: code %d, stderr %q", code, stderr)
	}
}

// TestStoreCopyToRedis moves a SQLite store to a Redis server named by
// its URL, and the latch is there afterwards.
func TestStoreCopyToRedis(t *testing.T) {
	srv := redistest.Server(t)
	src := t.TempDir()
	initStore(t, src)
	ctx := context.Background()
	st := openData(t, src)
	l, err := st.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "virus"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	code, stdout, stderr := runCmd("store", "copy", "--from", src, "--to", srv.URL(), "--yes")
	if code != 0 || !strings.Contains(stdout, "verified") {
		t.Fatalf("store copy to Redis: code %d\n%s%s", code, stdout, stderr)
	}
	rs, err := redisstore.Open(ctx, redisstore.Options{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if got, err := rs.GetLatch(ctx, l.ID); err != nil || got.Key != "10.1.2.3" {
		t.Errorf("latch %s in Redis = %+v, %v", l.ID, got, err)
	}
	// A second copy into the same prefix is refused: it is not empty.
	if code, _, stderr := runCmd("store", "copy", "--from", src, "--to", srv.URL(), "--yes"); code == 0 {
		t.Errorf("a second copy into a Redis store that holds data succeeded: %s", stderr)
	}
}
