package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/mtaqueue"
	"mailwarden/test/harness"
)

// queueRun runs "mailwarden queue ARGS" (see runNoun).
func queueRun(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	return runNoun(t, bin, "queue", args...)
}

// queueSnapshot is the queue as postqueue -j lists it, read here
// independently of mailwarden: queue name by queue ID, and sender by ID.
type queueSnapshot struct {
	queue, sender map[string]string
}

func snapshot(t *testing.T, p *harness.Postfix) queueSnapshot {
	t.Helper()
	s := queueSnapshot{queue: map[string]string{}, sender: map[string]string{}}
	for _, e := range p.Queue(t) {
		s.queue[e.QueueID] = e.QueueName
		s.sender[e.QueueID] = e.Sender
	}
	return s
}

// queueSenders is the mix the test queue is filled with: two hijacked
// mailboxes' spam runs and the legitimate mail of two users.
var queueSenders = []queueSender{
	{"office@victim-one.example", "x@gmail.test", 2000},
	{"servises@victim-two.example", "y@yahoo.test", 1500},
	{"alice@school.example", "parent@district.test", 1000},
	{"bob@school.example", "parent@district.test", 500},
}

// queueSender is one smtp-source run into a test queue.
type queueSender struct {
	from, to string
	n        int
}

// queuedPostfix starts a Postfix with its queue manager disabled, so that
// accepted mail stays in the queue and nothing is delivered, retried or
// moved behind the test's back (the relay port has nothing listening,
// for good measure), and fills it with every sender's messages at once,
// over sessions(n) connections each. It returns the Postfix and the
// queue: section of a mailwarden config for it.
func queuedPostfix(t testing.TB, senders []queueSender, sessions func(n int) int) (*harness.Postfix, string) {
	t.Helper()
	var progs [3]string
	for i, name := range []string{"smtp-source", "postqueue", "postsuper"} {
		path, err := harness.Program(name)
		if err != nil {
			harness.SkipOrFail(t, "%v", err)
		}
		progs[i] = path
	}
	p := harness.StartPostfix(t, harness.PostfixConfig{
		SinkPort: harness.FreePort(t),
		Extra:    []string{"master_service_disable = qmgr/unix"},
	})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(senders))
	total := 0
	for _, s := range senders {
		total += s.n
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(progs[0], "-m", fmt.Sprint(s.n), "-s", fmt.Sprint(sessions(s.n)), "-f", s.from, "-t", s.to, p.Addr).CombinedOutput()
			if err != nil {
				errs <- fmt.Errorf("smtp-source -f %s: %v\n%s", s.from, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("queued %d messages in %v", total, time.Since(start).Round(time.Millisecond))
	return p, fmt.Sprintf("queue:\n  mta: postfix\n  postqueue: %s\n  postsuper: %s\n  config_directory: %s", progs[1], progs[2], p.ConfigDir)
}

// TestQueueDayB fills a real Postfix queue with 5,000 messages from mixed
// senders and runs the Day B procedure of docs/queue.md with the built
// binary: the summary matches postqueue -j counted here; dry runs change
// nothing; hold, release and purge by pattern move or remove exactly the
// selected messages (compared by queue ID before and after); bad input
// exits non-zero with nothing deleted.
func TestQueueDayB(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	p, queueConfig := queuedPostfix(t, queueSenders, func(int) int { return 10 })
	total := 0
	for _, s := range queueSenders {
		total += s.n
	}
	all := snapshot(t, p)
	if len(all.queue) != total {
		t.Fatalf("the queue holds %d messages after sending %d", len(all.queue), total)
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "mailwarden.yaml")
	writeFile(t, cfg, queueConfig+"\n")

	// unchanged fails the test unless the queue is exactly before.
	unchanged := func(what string, before queueSnapshot) {
		t.Helper()
		if now := snapshot(t, p); !maps.Equal(now.queue, before.queue) {
			t.Fatalf("%s changed the queue: %d messages before, %d after", what, len(before.queue), len(now.queue))
		}
	}

	t.Run("summary", func(t *testing.T) {
		began := time.Now()
		out, errOut, code := queueRun(t, bin, "summary", "--config", cfg, "--top", "0", "--json")
		t.Logf("queue summary of %d messages: %v", total, time.Since(began).Round(time.Millisecond))
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var sum mtaqueue.Summary
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		bySender, byDomain, byQueue := map[string]int{}, map[string]int{}, map[string]int{}
		for id, from := range all.sender {
			bySender[from]++
			byDomain[from[strings.LastIndexByte(from, '@')+1:]]++
			byQueue[all.queue[id]]++
		}
		counts := func(cs []mtaqueue.Count) map[string]int {
			m := map[string]int{}
			for _, c := range cs {
				m[c.Key] = c.Messages
			}
			return m
		}
		if sum.Messages != total || !maps.Equal(counts(sum.BySender), bySender) ||
			!maps.Equal(counts(sum.BySenderDomain), byDomain) || !maps.Equal(counts(sum.ByQueue), byQueue) {
			t.Errorf("summary %d messages, senders %v, domains %v, queues %v; postqueue -j: %d, %v, %v, %v",
				sum.Messages, counts(sum.BySender), counts(sum.BySenderDomain), counts(sum.ByQueue), total, bySender, byDomain, byQueue)
		}
		if rd := counts(sum.ByRecipientDomain); rd["gmail.test"] != 2000 || rd["district.test"] != 1500 {
			t.Errorf("recipient domains %v", rd)
		}
		if age := counts(sum.ByAge); age["<1h"] != total {
			t.Errorf("ages %v", age)
		}
		text, _, code := queueRun(t, bin, "summary", "--config", cfg)
		if code != 0 || !strings.Contains(text, fmt.Sprintf("%d messages", total)) || !strings.Contains(text, "2000  office@victim-one.example") {
			t.Errorf("summary table: exit %d\n%s", code, text)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		_, errOut, code := queueRun(t, bin, "purge", "--config", cfg, "--sender-regexp", "(office", "--apply")
		if code != 2 || !strings.Contains(errOut, "sender regular expression") {
			t.Errorf("invalid regexp: exit %d, %q", code, errOut)
		}
		missing := filepath.Join(dir, "missing.yaml")
		writeFile(t, missing, fmt.Sprintf("queue:\n  postqueue: %s\n  config_directory: %s\n", filepath.Join(dir, "no-postqueue"), p.ConfigDir))
		_, errOut, code = queueRun(t, bin, "purge", "--config", missing, "--apply")
		if code == 0 || !strings.Contains(errOut, "postqueue not found at") {
			t.Errorf("missing postqueue: exit %d, %q", code, errOut)
		}
		unchanged("bad input", all)
	})

	t.Run("list", func(t *testing.T) {
		out, errOut, code := queueRun(t, bin, "list", "--config", cfg, "--sender", "bob@*", "--csv")
		if code != 0 || strings.Count(out, "\n") != 501 {
			t.Errorf("list --sender bob@*: exit %d, %d lines; %s", code, strings.Count(out, "\n"), errOut)
		}
	})

	// As root the queue files are read directly; every message must be
	// what postqueue -j says of it.
	t.Run("queue files match postqueue", func(t *testing.T) {
		postqueue, _ := harness.Program("postqueue")
		postsuper, _ := harness.Program("postsuper")
		want := map[string]mtaqueue.Message{}
		j, err := exec.Command(postqueue, "-c", p.ConfigDir, "-j").Output()
		if err != nil {
			t.Fatal(err)
		}
		if err := mtaqueue.ParsePostqueue(bytes.NewReader(j), func(m mtaqueue.Message) error { want[m.ID] = m; return nil }); err != nil {
			t.Fatal(err)
		}
		n := 0
		pf := &mtaqueue.Postfix{Postqueue: "/bin/false", Postsuper: postsuper, ConfigDir: p.ConfigDir}
		err = pf.List(context.Background(), func(m mtaqueue.Message) error {
			n++
			w, ok := want[m.ID]
			if !ok || m.Queue != w.Queue || m.Sender != w.Sender || m.Size != w.Size || !m.Arrival.Equal(w.Arrival) ||
				!slices.Equal(m.Recipients, w.Recipients) {
				return fmt.Errorf("from the queue file %+v, from postqueue -j %+v", m, w)
			}
			return nil
		})
		if err != nil || n != len(want) {
			t.Fatalf("reading the queue files (postqueue disabled): %d messages, %v; postqueue -j lists %d", n, err, len(want))
		}
	})

	t.Run("dry runs", func(t *testing.T) {
		for _, verb := range []string{"purge", "hold", "release"} {
			out, errOut, code := queueRun(t, bin, verb, "--config", cfg, "--sender", "servises@*")
			if code != 0 || !strings.Contains(out, "1500 messages") || !strings.Contains(out, "dry run: nothing changed") {
				t.Errorf("%s dry run: exit %d\n%s%s", verb, code, out, errOut)
			}
		}
		unchanged("the dry runs", all)
	})

	t.Run("hold and release", func(t *testing.T) {
		out, errOut, code := queueRun(t, bin, "hold", "--config", cfg, "--sender-domain", "school.example", "--apply")
		if code != 0 || !strings.Contains(out, "held 1500 messages; 0 gone or already held") {
			t.Fatalf("hold: exit %d\n%s", code, tail(out+errOut))
		}
		held := snapshot(t, p)
		for id, q := range all.queue {
			school := strings.HasSuffix(all.sender[id], "@school.example")
			if school && held.queue[id] != mtaqueue.Hold || !school && held.queue[id] != q {
				t.Fatalf("after hold, %s from %s is in %q (was %q)", id, all.sender[id], held.queue[id], q)
			}
		}
		out, errOut, code = queueRun(t, bin, "release", "--config", cfg, "--sender", "bob@school.example", "--apply")
		if code != 0 || !strings.Contains(out, "released 500 messages; 0 gone or not held") {
			t.Fatalf("release: exit %d\n%s", code, tail(out+errOut))
		}
		released := snapshot(t, p)
		for id := range all.queue {
			want := held.queue[id]
			if all.sender[id] == "bob@school.example" && want == mtaqueue.Hold {
				want = mtaqueue.Deferred // postsuper(1) -H: released mail goes to deferred
			}
			if released.queue[id] != want {
				t.Fatalf("after release, %s from %s is in %q, want %q", id, all.sender[id], released.queue[id], want)
			}
		}
	})

	t.Run("purge", func(t *testing.T) {
		before := snapshot(t, p)
		began := time.Now()
		out, errOut, code := queueRun(t, bin, "purge", "--config", cfg, "--sender", "*@victim-*.example", "--apply")
		t.Logf("queue purge of 3500 of %d messages: %v", total, time.Since(began).Round(time.Millisecond))
		if code != 0 || !strings.Contains(out, "deleted 3500 messages; 0 already gone") {
			t.Fatalf("purge: exit %d\n%s", code, tail(out+errOut))
		}
		after := snapshot(t, p)
		var purged []string
		for id, q := range before.queue {
			spam := strings.Contains(before.sender[id], "@victim-")
			_, still := after.queue[id]
			switch {
			case spam && still:
				t.Fatalf("%s from %s is still queued", id, before.sender[id])
			case !spam && after.queue[id] != q:
				t.Fatalf("%s from %s was touched: in %q, was %q", id, before.sender[id], after.queue[id], q)
			case spam:
				purged = append(purged, id)
			}
		}
		if len(after.queue) != 1500 || len(purged) != 3500 {
			t.Fatalf("%d messages left, %d purged; want 1500 and 3500", len(after.queue), len(purged))
		}
		// A message that left the queue between listing and acting is
		// reported, not an error: postsuper's real output says so.
		postqueue, _ := harness.Program("postqueue")
		postsuper, _ := harness.Program("postsuper")
		pf := &mtaqueue.Postfix{Postqueue: postqueue, Postsuper: postsuper, ConfigDir: p.ConfigDir}
		res, err := pf.Delete(context.Background(), purged[:5])
		if err != nil || len(res.Done) != 0 || len(res.Gone) != 5 {
			t.Errorf("deleting 5 deleted messages again: %+v, %v", res, err)
		}
		unchanged("deleting deleted messages", after)
	})
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}
