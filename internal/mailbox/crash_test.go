package mailbox

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailwarden/internal/mailbox/mailboxtest"
)

// crashEnv carries the removal a crash child performs, as JSON.
const crashEnv = "MAILWARDEN_MAILBOX_CRASH_CHILD"

type crashJob struct {
	Source  Source
	Targets []string
	Options ApplyOptions
}

// TestCrashChild is the child TestCrashKill starts and kills: it runs one
// removal with --force over the tree it is given.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("started by TestCrashKill")
	}
	var job crashJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		t.Fatal(err)
	}
	targets := targetsOf(t, job.Targets)
	if _, res, err := Remove(job.Source, targets, job.Options); err != nil || len(res.Failed) > 0 {
		t.Fatalf("removal failed: %v %v", err, res)
	}
}

// TestCrashKill kills a removal with SIGKILL at random moments, round
// after round. After each kill every file is wholly its old or wholly
// its new content, with its owner and mode, never empty or partial;
// nothing else in the tree has changed; and restore gives back the
// identical tree, which the next round starts from.
func TestCrashKill(t *testing.T) {
	rounds := 24
	if testing.Short() {
		rounds = 6
	}
	a := newAttackedTree(t, 40, 160, 9, false)
	p, err := BuildPlan(a.Source, targetsOf(t, a.Bogus), a.Quarant)
	if err != nil {
		t.Fatal(err)
	}
	job, err := json.Marshal(crashJob{Source: a.Source, Targets: a.Bogus, Options: a.applyOptions(true)})
	if err != nil {
		t.Fatal(err)
	}
	run := func(kill time.Duration) (time.Duration, bool) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+string(job))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var timer *time.Timer
		if kill > 0 {
			timer = time.AfterFunc(kill, func() { cmd.Process.Signal(syscall.SIGKILL) })
		}
		err := cmd.Wait()
		took := time.Since(start)
		if timer != nil {
			timer.Stop()
		}
		if err == nil {
			return took, false
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return took, true
		}
		t.Fatalf("crash child failed on its own: %v\n%s", err, out.String())
		return 0, false
	}
	// One whole run, to know how long to wait before killing.
	whole, _ := run(0)
	a.checkOldOrNew(t, p, true)
	a.restoreNewest(t, nil)
	seen := map[string]bool{}
	for _, b := range mustBackups(t, a.Backups) {
		seen[b.ID] = true
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	killed, midEdit := 0, 0
	for round := range rounds {
		delay := time.Duration(rng.Int64N(int64(whole))) + time.Millisecond
		took, wasKilled := run(delay)
		if wasKilled {
			killed++
		} else {
			// A run that finished shows how long one takes now: the
			// machine's load changes, and delays past the end kill nothing.
			whole = min(whole, took)
		}
		if n := a.checkOldOrNew(t, p, !wasKilled); n > 0 && n < len(p.Changes) {
			midEdit++
		}
		if t.Failed() {
			t.Fatalf("round %d, killed after %v", round, delay)
		}
		a.restoreNewest(t, seen)
		if d := mailboxtest.Diff(a.Before, capture(t, a), 10); len(d) > 0 {
			t.Fatalf("round %d (killed after %v): after restore the tree differs:\n%s", round, delay, strings.Join(d, "\n"))
		}
	}
	t.Logf("%d rounds, %d killed mid-run, %d of them with some files edited and others not; a whole run takes %v",
		rounds, killed, midEdit, whole)
	if killed < rounds/2 {
		t.Errorf("only %d of %d runs were killed before finishing", killed, rounds)
	}
}

// checkOldOrNew checks the tree after a (killed) removal.
// It returns how many files were new.
func (a *attackedTree) checkOldOrNew(t *testing.T, p *Plan, finished bool) int {
	t.Helper()
	now := capture(t, a)
	changes := map[string]*Change{}
	for i := range p.Changes {
		changes[p.Changes[i].Path] = &p.Changes[i]
	}
	newCount := 0
	for path, cur := range now {
		old, existed := a.Before[path]
		c := changes[path]
		switch {
		case c != nil:
			if cur.Data != string(c.Old) && cur.Data != string(c.New) {
				t.Errorf("%s is neither its old nor its new content (%d bytes)", path, len(cur.Data))
			}
			if cur.Data == string(c.New) {
				newCount++
			}
			if cur.Mode != old.Mode || cur.UID != old.UID || cur.GID != old.GID {
				t.Errorf("%s: mode %v owner %d:%d, was %v %d:%d", path, cur.Mode, cur.UID, cur.GID, old.Mode, old.UID, old.GID)
			}
		case !existed:
			// Only a temporary file of the removal may be new.
			if !strings.HasPrefix(filepath.Base(path), ".") || !strings.HasSuffix(path, ".tmp") {
				t.Errorf("new file %s", path)
			}
		case cur != old && !old.Mode.IsDir():
			t.Errorf("%s changed, and no removal was planned for it", path)
		}
	}
	if finished && newCount != len(p.Changes) {
		t.Errorf("the run finished but only %d of %d files are new", newCount, len(p.Changes))
	}
	for path := range a.Before {
		if _, ok := now[path]; !ok && !a.quarantined(path, p) {
			t.Errorf("%s is gone and was not to be quarantined", path)
		}
	}
	return newCount
}

// quarantined reports whether the plan moves path or a directory above it.
func (a *attackedTree) quarantined(path string, p *Plan) bool {
	for _, m := range p.Moves {
		if path == m.Path || strings.HasPrefix(path, m.Path+"/") {
			return true
		}
	}
	return false
}

// restoreNewest restores the newest backup not in seen (if the run got
// as far as making one) and adds it to seen.
func (a *attackedTree) restoreNewest(t *testing.T, seen map[string]bool) {
	t.Helper()
	for _, b := range mustBackups(t, a.Backups) {
		if seen[b.ID] || strings.HasSuffix(b.ID, partial) {
			continue
		}
		if _, err := Restore(b.Dir, RestoreOptions{}); err != nil {
			t.Fatalf("restoring %s (%s): %v", b.ID, b.State, err)
		}
		if seen != nil {
			seen[b.ID] = true
		}
	}
}

func mustBackups(t *testing.T, dir string) []BackupInfo {
	t.Helper()
	list, err := ListBackups(dir)
	if err != nil {
		t.Fatal(err)
	}
	return list
}
