package integration_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"mailwarden/internal/mtaqueue"
	"mailwarden/test/harness"
)

// eximQueueSenders fill the Exim test queue: the spam runs of two
// hijacked mailboxes, one of them sending with its own login, and the
// legitimate mail of two users, one authenticated.
var eximQueueSenders = []struct {
	from, to, auth string
	n              int
}{
	{"office@victim-one.example", "x@gmail.test", "", 90},
	{"office@victim-one.example", "x@gmail.test", "office", 30},
	{"servises@victim-two.example", "y@yahoo.test", "", 80},
	{"alice@school.example", "parent@district.test", "alice", 60},
	{"bob@school.example", "parent@district.test", "", 40},
}

// TestEximQueue runs the Day B procedure of docs/queue.md against a real
// Debian Exim 4.96 queue of 300 messages submitted with -odq (no daemon,
// no queue runner: they stay queued), with the built binary: the summary
// matches exim -bpc and exim -bp counted here; --auth-user selects
// exactly the messages Exim recorded an authenticated user for; a purge
// dry run changes nothing and --apply removes exactly the selected
// messages, compared by ID; hold freezes exactly the selected and
// release thaws them; bad input exits non-zero with nothing changed.
func TestEximQueue(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	harness.RequireExim(t)
	// Nothing listens on the smarthost port; nothing is delivered anyway.
	q := harness.NewEximQueue(t, harness.FreePort(t))

	// exim -odq waits for the spool files to reach the disk: four at a
	// time fill the queue sooner on a busy machine.
	var submits []func()
	for _, s := range eximQueueSenders {
		for range s.n {
			submits = append(submits, func() { q.Submit(t, harness.EximSubmission{From: s.from, To: []string{s.to}, AuthUser: s.auth}) })
		}
	}
	fourAtATime(submits)
	if t.Failed() {
		t.FailNow()
	}
	all := q.Queue(t)
	const total = 300
	if len(all) != total || q.Count(t) != total {
		t.Fatalf("exim -bp lists %d messages, -bpc %d, after submitting %d", len(all), q.Count(t), total)
	}
	// What Exim recorded, read through Exim: who authenticated.
	authOf := map[string]string{}
	var mu sync.Mutex
	var reads []func()
	for id := range all {
		reads = append(reads, func() {
			if u := q.AuthUser(t, id); u != "" {
				mu.Lock()
				authOf[id] = u
				mu.Unlock()
			}
		})
	}
	fourAtATime(reads)
	if t.Failed() {
		t.FailNow()
	}

	// Readable by the ordinary user of the unreadable-spool case.
	dir := harness.InstanceDir(t, "mwq")
	cfg := filepath.Join(dir, "mailwarden.yaml")
	writeFile(t, cfg, fmt.Sprintf("queue:\n  mta: exim\n  exim: %s\n  exim_config: %s\n  spool_directory: %s\n", q.Binary, q.ConfigFile, q.Spool))
	// Without spool_directory, mailwarden asks exim -bP.
	asked := filepath.Join(dir, "asked.yaml")
	writeFile(t, asked, fmt.Sprintf("queue:\n  mta: exim\n  exim: %s\n  exim_config: %s\n", q.Binary, q.ConfigFile))

	unchanged := func(what string, before map[string]harness.EximQueued) {
		t.Helper()
		if now := q.Queue(t); !maps.Equal(now, before) {
			t.Fatalf("%s changed the queue: %d messages before, %d after", what, len(before), len(now))
		}
	}
	// listIDs runs queue list --csv with the arguments and returns the
	// IDs it printed.
	listIDs := func(t *testing.T, args ...string) []string {
		t.Helper()
		out, errOut, code := queueRun(t, bin, append([]string{"list", "--config", cfg, "--csv"}, args...)...)
		if code != 0 {
			t.Fatalf("list %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil || len(rows) == 0 {
			t.Fatalf("list --csv printed no CSV: %v\n%s", err, out)
		}
		var ids []string
		for _, r := range rows[1:] {
			ids = append(ids, r[0])
		}
		slices.Sort(ids)
		return ids
	}
	idsWhere := func(m map[string]harness.EximQueued, match func(id string, e harness.EximQueued) bool) []string {
		var ids []string
		for id, e := range m {
			if match(id, e) {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return ids
	}

	t.Run("summary", func(t *testing.T) {
		for _, c := range []string{cfg, asked} {
			out, errOut, code := queueRun(t, bin, "summary", "--config", c, "--top", "0", "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var sum mtaqueue.Summary
			if err := json.Unmarshal([]byte(out), &sum); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			counts := func(cs []mtaqueue.Count) map[string]int {
				m := map[string]int{}
				for _, c := range cs {
					m[c.Key] = c.Messages
				}
				return m
			}
			bySender, byAuth := map[string]int{}, map[string]int{}
			for id, e := range all {
				bySender[e.Sender]++
				if u := authOf[id]; u != "" {
					byAuth[u]++
				}
			}
			if sum.Messages != q.Count(t) || !maps.Equal(counts(sum.BySender), bySender) || !maps.Equal(counts(sum.ByAuthUser), byAuth) {
				t.Errorf("summary (%s): %d messages, senders %v, auth users %v; exim: %d, %v, %v",
					filepath.Base(c), sum.Messages, counts(sum.BySender), counts(sum.ByAuthUser), q.Count(t), bySender, byAuth)
			}
			if qs := counts(sum.ByQueue); qs[mtaqueue.Active] != total {
				t.Errorf("queues %v, want all %d active (never tried)", qs, total)
			}
		}
		text, _, code := queueRun(t, bin, "summary", "--config", cfg)
		if code != 0 || !strings.Contains(text, "300 messages") || !strings.Contains(text, "120  office@victim-one.example") ||
			!strings.Contains(text, "top authenticated users") {
			t.Errorf("summary table: exit %d\n%s", code, text)
		}
	})

	t.Run("list --auth-user", func(t *testing.T) {
		for _, u := range []string{"alice", "office"} {
			want := idsWhere(all, func(id string, _ harness.EximQueued) bool { return authOf[id] == u })
			if got := listIDs(t, "--auth-user", u); !slices.Equal(got, want) || len(want) == 0 {
				t.Errorf("list --auth-user %s: %d IDs, want the %d Exim recorded", u, len(got), len(want))
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		_, errOut, code := queueRun(t, bin, "purge", "--config", cfg, "--sender-regexp", "(office", "--apply")
		if code != 2 || !strings.Contains(errOut, "sender regular expression") {
			t.Errorf("invalid regexp: exit %d, %q", code, errOut)
		}
		missing := filepath.Join(dir, "missing.yaml")
		writeFile(t, missing, fmt.Sprintf("queue:\n  mta: exim\n  exim: %s\n  spool_directory: %s\n", filepath.Join(dir, "no-exim4"), q.Spool))
		_, errOut, code = queueRun(t, bin, "purge", "--config", missing, "--apply")
		if code != 1 || !strings.Contains(errOut, "exim not found at "+filepath.Join(dir, "no-exim4")) {
			t.Errorf("missing exim: exit %d, %q", code, errOut)
		}
		// The spool is Debian-exim's, mode 0750: an ordinary user may
		// not read it.
		stdout, errOut, code := queueRunAs(t, bin, "nobody", "purge", "--config", cfg, "--apply")
		if code != 1 || !strings.Contains(errOut, "permission denied") || !strings.Contains(errOut, "Debian-exim") ||
			!strings.Contains(errOut, q.Spool) {
			t.Errorf("unreadable spool: exit %d, %q %q", code, stdout, errOut)
		}
		unchanged("bad input", all)
	})

	t.Run("purge", func(t *testing.T) {
		before := q.Queue(t)
		out, errOut, code := queueRun(t, bin, "purge", "--config", cfg, "--sender", "office@*")
		if code != 0 || !strings.Contains(out, "would delete 120 messages") || !strings.Contains(out, "dry run: nothing changed") {
			t.Fatalf("purge dry run: exit %d\n%s%s", code, out, errOut)
		}
		unchanged("the dry run", before)

		out, errOut, code = queueRun(t, bin, "purge", "--config", cfg, "--sender", "office@*", "--apply")
		if code != 0 || !strings.Contains(out, "deleted 120 messages; 0 already gone") {
			t.Fatalf("purge: exit %d\n%s", code, tail(out+errOut))
		}
		after := q.Queue(t)
		var purged []string
		for id, e := range before {
			spam := e.Sender == "office@victim-one.example"
			now, still := after[id]
			switch {
			case spam && still:
				t.Fatalf("%s from %s is still queued", id, e.Sender)
			case !spam && now != e:
				t.Fatalf("%s from %s was touched: now %+v, was %+v", id, e.Sender, now, e)
			case spam:
				purged = append(purged, id)
			}
		}
		if len(after) != total-120 || len(purged) != 120 || q.Count(t) != total-120 {
			t.Fatalf("%d messages left, %d purged; want %d and 120", len(after), len(purged), total-120)
		}
		// Exim's real report of a message that left the queue between
		// listing and acting: gone, not an error.
		ex := &mtaqueue.Exim{Binary: q.Binary, Config: q.ConfigFile, SpoolDir: q.Spool}
		res, err := ex.Delete(context.Background(), purged[:5])
		if err != nil || len(res.Done) != 0 || len(res.Gone) != 5 {
			t.Errorf("deleting 5 deleted messages again: %+v, %v", res, err)
		}
		unchanged("deleting deleted messages", after)
	})

	t.Run("hold and release", func(t *testing.T) {
		before := q.Queue(t)
		selected := idsWhere(before, func(_ string, e harness.EximQueued) bool { return e.Sender == "servises@victim-two.example" })
		out, errOut, code := queueRun(t, bin, "hold", "--config", cfg, "--sender-domain", "victim-two.example", "--apply")
		if code != 0 || !strings.Contains(out, "held 80 messages; 0 gone or already held") {
			t.Fatalf("hold: exit %d\n%s", code, tail(out+errOut))
		}
		held := q.Queue(t)
		if frozen := idsWhere(held, func(_ string, e harness.EximQueued) bool { return e.Frozen }); !slices.Equal(frozen, selected) {
			t.Fatalf("exim -bp shows %d messages *** frozen ***, want exactly the %d selected", len(frozen), len(selected))
		}
		if got := listIDs(t, "--queue", "frozen"); !slices.Equal(got, selected) {
			t.Errorf("list --queue frozen: %d IDs, want the %d held", len(got), len(selected))
		}
		ex := &mtaqueue.Exim{Binary: q.Binary, Config: q.ConfigFile, SpoolDir: q.Spool}
		if res, err := ex.Hold(context.Background(), selected[:3]); err != nil || len(res.Gone) != 3 {
			t.Errorf("holding held messages again: %+v, %v; want 3 gone (already frozen)", res, err)
		}

		out, errOut, code = queueRun(t, bin, "release", "--config", cfg, "--queue", "frozen", "--apply")
		if code != 0 || !strings.Contains(out, "released 80 messages; 0 gone or not held") {
			t.Fatalf("release: exit %d\n%s", code, tail(out+errOut))
		}
		released := q.Queue(t)
		if frozen := idsWhere(released, func(_ string, e harness.EximQueued) bool { return e.Frozen }); len(frozen) != 0 || len(released) != len(before) {
			t.Errorf("after release: %d frozen, %d messages; want 0 and %d", len(frozen), len(released), len(before))
		}
		unchanged("hold and release", before)
	})
}

// fourAtATime runs the jobs, four at a time, and returns when all are
// done.
func fourAtATime(jobs []func()) {
	work := make(chan func())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				f()
			}
		}()
	}
	for _, f := range jobs {
		work <- f
	}
	close(work)
	wg.Wait()
}

// queueRunAs runs "mailwarden queue ARGS" as the named user, from a copy
// of the binary that user may execute.
func queueRunAs(t *testing.T, bin, name string, args ...string) (string, string, int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		harness.SkipOrFail(t, "user %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := harness.InstanceDir(t, "bin")
	copied := filepath.Join(dir, "mailwarden")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copied, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copied, append([]string{"queue"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running mailwarden queue as %s: %v", name, err)
	}
	return stdout.String(), stderr.String(), code
}
