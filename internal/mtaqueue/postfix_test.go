package mtaqueue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakePostfix writes stand-ins for postqueue and postsuper: postqueue
// prints testdata/postqueue.jsonl twice (a message listed twice is
// passed on once); postsuper acts on IDs that start with a digit, says
// nothing about the rest, and appends every ID and argument it got to a
// log, one run per line.
func fakePostfix(t *testing.T) (*Postfix, string) {
	t.Helper()
	dir := t.TempDir()
	sample, _ := filepath.Abs("testdata/postqueue.jsonl")
	log := filepath.Join(dir, "runs")
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pq := write("postqueue", `cat `+sample+` `+sample+`; echo "postqueue: warning: Mail system is down" >&2`+"\n")
	ps := write("postsuper", `
op=$3
case $op in -d) what=removed;; -h) what="placed on hold";; -H) what="released from hold";; esac
printf '%s' "$*" >> `+log+`
n=0
while read id; do
	printf ' %s' "$id" >> `+log+`
	case $id in [0-9]*) echo "postsuper: $id: $what" >&2; n=$((n+1));; esac
done
echo >> `+log+`
echo "postsuper: Done: $n messages" >&2
`)
	cfg := filepath.Join(dir, "etc")
	os.Mkdir(cfg, 0o755)
	os.WriteFile(filepath.Join(cfg, "main.cf"), nil, 0o644)
	return &Postfix{Postqueue: pq, Postsuper: ps, ConfigDir: cfg, Batch: 2}, log
}

func TestPostfixList(t *testing.T) {
	p, _ := fakePostfix(t)
	var ids []string
	if err := p.List(context.Background(), func(m Message) error { ids = append(ids, m.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 6 {
		t.Errorf("listed %d messages, want 6 (each once): %q", len(ids), ids)
	}
}

// TestPostfixActs: IDs go to postsuper on standard input in batches,
// with -c; what postsuper did not report is Gone.
func TestPostfixActs(t *testing.T) {
	p, log := fakePostfix(t)
	ids := []string{"4F9D21C2A3B", "ABCDEF123", "51A0B1C2D3E", "6C7D8E9F012", "Z1"}
	for _, act := range []struct {
		op string
		fn func(context.Context, []string) (Result, error)
	}{{"-d", p.Delete}, {"-h", p.Hold}, {"-H", p.Release}} {
		os.Remove(log)
		res, err := act.fn(context.Background(), ids)
		if err != nil {
			t.Fatalf("%s: %v", act.op, err)
		}
		if strings.Join(res.Done, " ") != "4F9D21C2A3B 51A0B1C2D3E 6C7D8E9F012" || strings.Join(res.Gone, " ") != "ABCDEF123 Z1" {
			t.Errorf("%s: done %q, gone %q", act.op, res.Done, res.Gone)
		}
		runs, _ := os.ReadFile(log)
		want := "-c " + p.ConfigDir + " " + act.op + " - 4F9D21C2A3B ABCDEF123\n" +
			"-c " + p.ConfigDir + " " + act.op + " - 51A0B1C2D3E 6C7D8E9F012\n" +
			"-c " + p.ConfigDir + " " + act.op + " - Z1\n"
		if string(runs) != want {
			t.Errorf("%s: postsuper ran as\n%s\nwant\n%s", act.op, runs, want)
		}
	}
}

// TestPostfixRefuses: a bad ID, a missing program or config directory
// stop the action before postsuper runs.
func TestPostfixRefuses(t *testing.T) {
	p, log := fakePostfix(t)
	if _, err := p.Delete(context.Background(), []string{"ABC", "x\nALL"}); err == nil {
		t.Error("an ID with a line break was accepted")
	}
	// postsuper takes ALL for every message in the queue.
	for _, id := range []string{"ALL", "all"} {
		if _, err := p.Delete(context.Background(), []string{"ABC", id}); err == nil {
			t.Errorf("the ID %q was accepted", id)
		}
	}
	missing := *p
	missing.Postqueue = "/nonexistent/postqueue"
	if err := missing.List(context.Background(), func(Message) error { return nil }); err == nil || !strings.Contains(err.Error(), "postqueue not found at /nonexistent/postqueue") {
		t.Errorf("missing postqueue: %v", err)
	}
	if _, err := missing.Delete(context.Background(), []string{"ABC"}); err == nil {
		t.Error("Delete ran with postqueue missing")
	}
	nocfg := *p
	nocfg.ConfigDir = "/nonexistent"
	if _, err := nocfg.Delete(context.Background(), []string{"ABC"}); err == nil || !strings.Contains(err.Error(), "config directory") {
		t.Errorf("missing config directory: %v", err)
	}
	if _, err := os.Stat(log); err == nil {
		t.Error("postsuper ran")
	}
}

// TestPostfixPostqueueFails: postqueue's own error is reported.
func TestPostfixPostqueueFails(t *testing.T) {
	p, _ := fakePostfix(t)
	os.WriteFile(p.Postqueue, []byte("#!/bin/sh\necho 'postqueue: fatal: Queue report unavailable - mail system is down' >&2\nexit 69\n"), 0o755)
	err := p.List(context.Background(), func(Message) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "mail system is down") {
		t.Errorf("error %v", err)
	}
}
