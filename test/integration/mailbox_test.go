package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailwarden/internal/mailbox/mailboxtest"
	"mailwarden/test/harness"
)

// mailboxBinary returns the built mailwarden for the mailbox tests, which
// need no Postfix: only the binary TestMain builds (as root, or in CI).
func mailboxBinary(t *testing.T) string {
	t.Helper()
	if built.err != nil {
		t.Fatalf("building mailwarden: %v", built.err)
	}
	if built.bin == "" {
		harness.SkipOrFail(t, "the integration tests run as root, where TestMain builds mailwarden")
	}
	return built.bin
}

// mailboxRun runs "mailwarden mailbox ARGS" (see runNoun).
func mailboxRun(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	return runNoun(t, bin, "mailbox", args...)
}

// runNoun runs "mailwarden NOUN ARGS" and returns its output and exit
// status, failing the test if it does not finish within 2 minutes.
func runNoun(t *testing.T, bin, noun string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{noun}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running mailwarden %s %s: %v", noun, strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("mailwarden %s %s: no result within 2 minutes", noun, strings.Join(args, " "))
	}
	return stdout.String(), stderr.String(), code
}

// TestMailboxDayB runs the Day B procedure of docs/mailbox.md with the
// built binary over a generated DirectAdmin tree: 250 domains of real
// mailboxes with Maildirs and mail, a snapshot, then 900 planted
// mailboxes over 12 local parts. The audit proposes exactly the planted
// ones; the dry run changes nothing; the removal takes out exactly their
// lines and quarantines their mail, every other byte unchanged, owner
// and mode kept; restore gives back the identical tree.
func TestMailboxDayB(t *testing.T) {
	t.Parallel()
	bin := mailboxBinary(t)
	dir := harness.InstanceDir(t, "mailbox")
	tr, err := mailboxtest.Generate(filepath.Join(dir, "srv"), mailboxtest.Options{Domains: 250, Seed: 11,
		MailDirs: true, Maildirs: true, UID: 8, GID: 12, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"--root", tr.Root, "--home", tr.Home, "--data", filepath.Join(dir, "data")}
	run := func(args ...string) (string, string, int) { return mailboxRun(t, bin, append(args, flags...)...) }
	mustRun := func(args ...string) string {
		t.Helper()
		out, errOut, code := run(args...)
		if code != 0 {
			t.Fatalf("mailwarden mailbox %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}

	mustRun("snapshot")
	if _, err := tr.Attack(mailboxtest.AttackOptions{Count: 900, Forwarders: true}); err != nil {
		t.Fatal(err)
	}
	auditJSON := mustRun("audit", "--json")
	var audit struct {
		Summary   struct{ Mailboxes, Domains, Suspect int }
		Mailboxes []struct {
			Address string
			Flags   []string
			Suspect bool
		}
	}
	if err := json.Unmarshal([]byte(auditJSON), &audit); err != nil {
		t.Fatalf("audit --json: %v", err)
	}
	var suspect []string
	for _, m := range audit.Mailboxes {
		if m.Suspect {
			suspect = append(suspect, m.Address)
		}
	}
	slices.Sort(suspect)
	bogus := slices.Sorted(slices.Values(tr.Bogus))
	if !slices.Equal(suspect, bogus) || audit.Summary.Mailboxes != len(tr.Legit)+900 || audit.Summary.Domains != 250 {
		t.Fatalf("audit: %d suspect of %d mailboxes on %d domains; want exactly the 900 planted of %d on 250",
			len(suspect), audit.Summary.Mailboxes, audit.Summary.Domains, len(tr.Legit)+900)
	}
	auditFile := filepath.Join(dir, "audit.json")
	if err := os.WriteFile(auditFile, []byte(auditJSON), 0o600); err != nil {
		t.Fatal(err)
	}

	before, err := mailboxtest.Capture(tr.Root, tr.Home)
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string) {
		t.Helper()
		now, err := mailboxtest.Capture(tr.Root, tr.Home)
		if err != nil {
			t.Fatal(err)
		}
		if d := mailboxtest.Diff(before, now, 10); len(d) > 0 {
			t.Fatalf("%s changed the tree:\n%s", what, strings.Join(d, "\n"))
		}
	}
	out, _, code := run("remove", "--from-audit", auditFile)
	if code != 1 || !strings.Contains(out, "Dry run: nothing has been changed.") || !strings.Contains(out, "Refused (--force overrides):") ||
		!strings.Contains(out, "Total: 900 mailboxes") || strings.Contains(out, "SHA512-CRYPT") {
		t.Fatalf("dry run: exit %d\n%s", code, tailText(out, 3000))
	}
	unchanged("the dry run")
	out, errOut, code := run("remove", "--from-audit", auditFile, "--apply")
	if code != 1 || !strings.Contains(errOut, "removal refused") {
		t.Fatalf("remove --apply without --force: exit %d\n%s\n%s", code, tailText(out, 2000), errOut)
	}
	unchanged("a refused removal")

	out = mustRun("remove", "--from-audit", auditFile, "--apply", "--force")
	if !strings.Contains(out, "Removed 900 mailboxes. To undo: mailwarden mailbox restore ") {
		t.Fatalf("remove --apply --force:\n%s", tailText(out, 3000))
	}
	checkRemoval(t, tr, before)
	var after struct {
		Summary struct{ Mailboxes, Suspect int }
	}
	json.Unmarshal([]byte(mustRun("audit", "--json")), &after)
	if after.Summary.Mailboxes != len(tr.Legit) || after.Summary.Suspect != 0 {
		t.Errorf("after removal the audit finds %d mailboxes (%d suspect); want the %d real ones", after.Summary.Mailboxes, after.Summary.Suspect, len(tr.Legit))
	}
	if out := mustRun("backups"); !strings.Contains(out, "complete") {
		t.Errorf("backups:\n%s", out)
	}

	mustRun("restore", "latest")
	unchanged("restore (it must give back the identical tree, so nothing)")
}

// checkRemoval compares the tree with before: the files that changed lost
// exactly their planted boxes' lines (worked out here from the text),
// kept owner and mode; the planted boxes' mail directories and limit
// files are gone; nothing else changed.
func checkRemoval(t *testing.T, tr *mailboxtest.Tree, before map[string]mailboxtest.Node) {
	t.Helper()
	now, err := mailboxtest.Capture(tr.Root, tr.Home)
	if err != nil {
		t.Fatal(err)
	}
	planted := map[string]bool{} // "domain/local"
	for _, b := range tr.Bogus {
		local, domain, _ := strings.Cut(b, "@")
		planted[domain+"/"+local] = true
	}
	gone := func(path string) bool {
		rel, _ := filepath.Rel(tr.Home, path)
		parts := strings.Split(rel, string(filepath.Separator))
		if len(parts) >= 4 && parts[1] == "imap" && planted[parts[2]+"/"+parts[3]] {
			return true // the mail directory, and everything in it
		}
		domain, box := filepath.Base(filepath.Dir(filepath.Dir(path))), filepath.Base(path)
		return filepath.Base(filepath.Dir(path)) == "limit" && planted[domain+"/"+box]
	}
	for path, old := range before {
		cur, ok := now[path]
		switch {
		case gone(path):
			if ok {
				t.Errorf("%s of a planted box is still there", path)
			}
		case !ok:
			t.Errorf("%s is gone", path)
		case old.Mode.IsDir():
		case cur != old:
			domain := filepath.Base(filepath.Dir(path))
			var want strings.Builder
			for _, line := range strings.SplitAfter(old.Data, "\n") {
				key, _, _ := strings.Cut(line, ":")
				if !planted[domain+"/"+key] {
					want.WriteString(line)
				}
			}
			if cur.Data != want.String() || cur.Mode != old.Mode || cur.UID != old.UID || cur.GID != old.GID {
				t.Errorf("%s changed beyond its planted lines", path)
			}
		}
	}
	for path := range now {
		if _, ok := before[path]; !ok {
			t.Errorf("new file %s", path)
		}
	}
}

// TestMailboxWatchEvent starts the daemon with mailbox.watch on over a
// generated tree, plants a burst of mailboxes, and sees the event through
// "mailwarden events --kind mailbox".
func TestMailboxWatchEvent(t *testing.T) {
	t.Parallel()
	bin := mailboxBinary(t)
	dir := harness.InstanceDir(t, "mbwatch")
	tr, err := mailboxtest.Generate(filepath.Join(dir, "srv"), mailboxtest.Options{Domains: 60, Seed: 12, MailDirs: true, UID: -1})
	if err != nil {
		t.Fatal(err)
	}
	mw := harness.StartMailwarden(t, bin, fmt.Sprintf(`mailbox:
  root: %q
  home: %q
  watch: true
  burst_count: 10
  burst_window: 1m
`, tr.Root, tr.Home))
	mw.WaitStderr(t, 0, func(line string) bool { return strings.Contains(line, "mailbox watch started") }, 10*time.Second)
	if res := mw.CLIWords(t, 1, "events", "--kind", "mailbox", "--json"); res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "[]" {
		t.Fatalf("events before the burst: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	planted, err := tr.Attack(mailboxtest.AttackOptions{Count: 15, Domains: 15})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		res := mw.CLIWords(t, 1, "events", "--kind", "mailbox", "--json")
		var evs []struct{ Kind, Check, Reason string }
		if res.ExitCode != 0 || json.Unmarshal([]byte(res.Stdout), &evs) != nil {
			t.Fatalf("events --kind mailbox: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
		}
		if len(evs) > 0 {
			e := evs[len(evs)-1]
			if e.Kind != "mailbox" || e.Check != "mailbox watch" || !strings.HasPrefix(e.Reason, "burst: ") {
				t.Errorf("event %+v", e)
			}
			named := 0
			for _, p := range planted {
				if strings.Contains(e.Reason, p) {
					named++
				}
			}
			if named < 5 {
				t.Errorf("the event names %d of the planted boxes: %q", named, e.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no mailbox event 15s after planting 15 mailboxes; daemon log:\n%s", tailText(mw.Stderr(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := mw.CLIWords(t, 1, "events", "--kind", "mailbox").Stdout; !strings.Contains(out, "mailbox") || !strings.Contains(out, "new mailboxes") {
		t.Errorf("events table:\n%s", out)
	}
}

// TestMailboxWatchForeground runs "mailwarden mailbox watch", for a
// server without the daemon: it prints a burst of planted mailboxes and
// stops cleanly on SIGTERM.
func TestMailboxWatchForeground(t *testing.T) {
	t.Parallel()
	bin := mailboxBinary(t)
	dir := harness.InstanceDir(t, "mbfg")
	tr, err := mailboxtest.Generate(filepath.Join(dir, "srv"), mailboxtest.Options{Domains: 30, Seed: 13, UID: -1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mailwarden.yaml")
	os.WriteFile(cfg, []byte("mailbox:\n  burst_count: 5\n  burst_window: 1m\n"), 0o644)
	cmd := exec.Command(bin, "mailbox", "watch", "--config", cfg, "--data", dir, "--root", tr.Root, "--home", tr.Home)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		buf := make([]byte, 4096)
		var acc string
		for {
			n, err := out.Read(buf)
			acc += string(buf[:n])
			for {
				i := strings.IndexByte(acc, '\n')
				if i < 0 {
					break
				}
				lines <- acc[:i]
				acc = acc[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("mailbox watch ended before %s; stderr:\n%s", what, stderr.String())
			}
			return l
		case <-time.After(15 * time.Second):
			t.Fatalf("no %s from mailbox watch within 15s; stderr:\n%s", what, stderr.String())
		}
		return ""
	}
	if l := next("its start line"); !strings.HasPrefix(l, "watching 30 passwd files for 5 or more new mailboxes within 1m") {
		t.Fatalf("start line %q", l)
	}
	if _, err := tr.Attack(mailboxtest.AttackOptions{Count: 6, Domains: 6}); err != nil {
		t.Fatal(err)
	}
	if l := next("a burst"); !strings.Contains(l, "burst: 6 new mailboxes on ") || !strings.Contains(l, " within 1m: ") {
		t.Errorf("burst line %q", l)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("mailbox watch after SIGTERM: %v; stderr:\n%s", err, stderr.String())
	}
}
