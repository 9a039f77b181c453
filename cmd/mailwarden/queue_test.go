package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailwarden/internal/mtaqueue"
)

// fakeQueue writes a config whose queue: section points at stand-ins
// for postqueue (printing the library's sample listing) and postsuper
// (acting on every ID and logging what it got), and returns the config
// file and postsuper's log.
func fakeQueue(t *testing.T) (cfg, log string) {
	t.Helper()
	dir := t.TempDir()
	sample, _ := filepath.Abs("../../internal/mtaqueue/testdata/postqueue.jsonl")
	log = filepath.Join(dir, "postsuper.log")
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pq := write("postqueue", "#!/bin/sh\ncat "+sample+"\n")
	// postsuper reports each message it acted on with the word of its
	// operation: -d removed, -h placed on hold, -H released from hold.
	ps := write("postsuper", "#!/bin/sh\ncase \"$1\" in -h) w='placed on hold';; -H) w='released from hold';; *) w=removed;; esac\n"+
		"while read id; do echo \"$* $id\" >> "+log+"; echo \"postsuper: $id: $w\" >&2; done\n")
	cfg = write("mailwarden.yaml", "queue:\n  postqueue: "+pq+"\n  postsuper: "+ps+"\n")
	return cfg, log
}

func TestQueueCommands(t *testing.T) {
	cfg, log := fakeQueue(t)

	code, out, errs := runCmd("queue", "summary", "--config", cfg, "--top", "2")
	if code != 0 || !strings.Contains(out, "6 messages, 8 recipients") || !strings.Contains(out, "2  office@victim-one.example") {
		t.Errorf("summary: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCmd("queue", "summary", "--config", cfg, "--json")
	var sum mtaqueue.Summary
	if code != 0 || json.Unmarshal([]byte(out), &sum) != nil || sum.Messages != 6 {
		t.Errorf("summary --json: exit %d\n%s", code, out)
	}

	code, out, _ = runCmd("queue", "list", "--config", cfg, "--sender-domain", "victim-one.example", "--json")
	var msgs []mtaqueue.Message
	if err := json.Unmarshal([]byte(out), &msgs); code != 0 || err != nil || len(msgs) != 3 {
		t.Errorf("list --json: exit %d, %v, %d messages\n%s", code, err, len(msgs), out)
	}
	code, out, _ = runCmd("queue", "list", "--config", cfg, "--queue", "deferred", "--csv")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.HasPrefix(out, "queue_id,queue,") {
		t.Errorf("list --csv: exit %d\n%s", code, out)
	}

	// The dry run prints the count and changes nothing.
	code, out, _ = runCmd("queue", "purge", "--config", cfg, "--sender", "*@victim-one.example")
	if code != 0 || !strings.Contains(out, "would delete 3 messages") || !strings.Contains(out, "dry run") {
		t.Errorf("purge dry run: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(log); err == nil {
		t.Fatal("the dry run ran postsuper")
	}

	// Bad input: nothing runs.
	code, _, errs = runCmd("queue", "purge", "--config", cfg, "--sender-regexp", "(office", "--apply")
	if code != 2 || !strings.Contains(errs, "sender regular expression") {
		t.Errorf("invalid regexp: exit %d, %q", code, errs)
	}
	code, _, errs = runCmd("queue", "purge", "--config", cfg, "--older-than", "soon", "--apply")
	if code != 2 || !strings.Contains(errs, "older-than") {
		t.Errorf("bad age: exit %d, %q", code, errs)
	}
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	os.WriteFile(missing, []byte("queue:\n  postqueue: /nonexistent/postqueue\n"), 0o644)
	code, _, errs = runCmd("queue", "purge", "--config", missing, "--apply")
	if code != 1 || !strings.Contains(errs, "postqueue not found at /nonexistent/postqueue") {
		t.Errorf("missing postqueue: exit %d, %q", code, errs)
	}
	exim := filepath.Join(t.TempDir(), "exim.yaml")
	os.WriteFile(exim, []byte("queue:\n  mta: exim\n  exim: /nonexistent/exim4\n"), 0o644)
	code, _, errs = runCmd("queue", "purge", "--config", exim, "--apply")
	if code != 1 || !strings.Contains(errs, "exim not found at /nonexistent/exim4") {
		t.Errorf("missing exim: exit %d, %q", code, errs)
	}
	if _, err := os.Stat(log); err == nil {
		t.Fatal("bad input ran postsuper")
	}

	code, out, errs = runCmd("queue", "purge", "--config", cfg, "--sender", "*@victim-one.example", "--apply")
	got, _ := os.ReadFile(log)
	if code != 0 || string(got) != "-d - 4F9D21C2A3B\n-d - 6C7D8E9F012\n-d - 4dV0Zx3Bq9z8Y7\n" || !strings.Contains(out, "deleted 3 messages; 0 already gone") {
		t.Errorf("purge --apply: exit %d\n%s%s\npostsuper got:\n%s", code, out, errs, got)
	}
}
