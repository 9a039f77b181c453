package mailbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/mailbox/mailboxtest"
)

// startWatch runs a Watcher over src and delivers its bursts.
func startWatch(t *testing.T, src Source, count int, window time.Duration) <-chan WatchBurst {
	t.Helper()
	bursts := make(chan WatchBurst, 16)
	w, err := NewWatcher(WatchOptions{Source: src, BurstCount: count, BurstWindow: window,
		Settle: 50 * time.Millisecond, OnBurst: func(b WatchBurst) { bursts <- b }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		w.Close()
	})
	return bursts
}

func TestWatchDirectAdmin(t *testing.T) {
	dir := t.TempDir()
	tr, err := mailboxtest.Generate(dir, mailboxtest.Options{Domains: 12, Seed: 5, UID: -1})
	if err != nil {
		t.Fatal(err)
	}
	src := Source{Layout: LayoutDirectAdmin, Root: tr.Root, Home: tr.Home}
	bursts := startWatch(t, src, 10, time.Minute)

	// A few new boxes, and a rewrite of a whole file by rename as many
	// tools do: the same users, so nothing new.
	if _, err := tr.Attack(mailboxtest.AttackOptions{Count: 4, Domains: 4}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(tr.Root, tr.Domains[0].Name, "passwd")
	data, _ := os.ReadFile(p)
	writeFile(t, p+".new", string(data), 0o640)
	if err := os.Rename(p+".new", p); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-bursts:
		t.Fatalf("burst reported for 4 new boxes: %+v", b)
	case <-time.After(500 * time.Millisecond):
	}

	// Eight more (twelve within the window), and a new domain with two.
	if _, err := tr.Attack(mailboxtest.AttackOptions{Count: 8, Domains: 8}); err != nil {
		t.Fatal(err)
	}
	var b WatchBurst
	select {
	case b = <-bursts:
	case <-time.After(5 * time.Second):
		t.Fatal("no burst reported for 12 new boxes within the window")
	}
	if b.Count != 12 || len(b.Mailboxes) != 12 || b.Continued {
		t.Errorf("burst %+v, want 12 new boxes", b)
	}
	for _, addr := range tr.Bogus {
		if !strings.Contains(strings.Join(b.Mailboxes, " "), addr) {
			t.Errorf("burst lacks %s", addr)
		}
	}
	if s := b.Summary(); !strings.HasPrefix(s, "burst: 12 new mailboxes on ") || !strings.Contains(s, "and 2 more") {
		t.Errorf("summary %q", s)
	}

	// After a burst, further boxes within the window come as one
	// "continued" report when the window ends, not one per box.
	nd := filepath.Join(tr.Root, "late.example")
	if err := os.Mkdir(nd, 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the new directory is watched
	writeFile(t, filepath.Join(nd, "passwd"), "x1:x\nx2:x\n", 0o640)
	select {
	case b := <-bursts:
		t.Fatalf("a second report within the window: %+v", b)
	case <-time.After(500 * time.Millisecond):
	}
}

func TestWatchContinued(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	writeFile(t, users, "a@x.example:p\n", 0o600)
	src := Source{Layout: LayoutDovecot, PasswdFiles: []string{users}}
	bursts := startWatch(t, src, 3, 700*time.Millisecond)
	add := func(names ...string) {
		for _, n := range names {
			if err := mailboxtest.AppendLine(users, n+":p\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("b@x.example", "c@y.example", "d@y.example")
	b := <-bursts
	if b.Count != 3 || b.Domains != 2 {
		t.Errorf("first burst %+v", b)
	}
	time.Sleep(100 * time.Millisecond)
	add("e@x.example")
	select {
	case b = <-bursts:
	case <-time.After(3 * time.Second):
		t.Fatal("the box that came after the burst was never reported")
	}
	if !b.Continued || b.Count != 1 || b.Mailboxes[0] != "e@x.example" {
		t.Errorf("continued burst %+v", b)
	}
	// A file replaced by junk is not read, and its users do not count
	// again once it is whole.
	data, _ := os.ReadFile(users)
	writeFile(t, users, "\x00junk", 0o600)
	time.Sleep(200 * time.Millisecond)
	writeFile(t, users, string(data), 0o600)
	select {
	case b := <-bursts:
		t.Errorf("users counted again after a bad read: %+v", b)
	case <-time.After(time.Second):
	}
}

func TestWatchManyDomains(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "virtual")
	var owners strings.Builder
	for i := range 50 {
		d := fmt.Sprintf("d%02d.example", i)
		writeFile(t, filepath.Join(root, d, "passwd"), "real:x\n", 0o640)
		fmt.Fprintf(&owners, "%s: acct\n", d)
	}
	writeFile(t, filepath.Join(root, "domainowners"), owners.String(), 0o644)
	bursts := startWatch(t, Source{Layout: LayoutDirectAdmin, Root: root}, 50, time.Minute)
	for i := range 50 {
		if err := mailboxtest.AppendLine(filepath.Join(root, fmt.Sprintf("d%02d.example", i), "passwd"), "ofice:x\n"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case b := <-bursts:
		if b.Count != 50 || b.Domains != 50 {
			t.Errorf("burst %+v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no burst for one box on each of 50 domains")
	}
}

func TestWatchNewDomain(t *testing.T) {
	root := filepath.Join(t.TempDir(), "virtual")
	writeFile(t, filepath.Join(root, "a.example", "passwd"), "real:x\n", 0o640)
	bursts := startWatch(t, Source{Layout: LayoutDirectAdmin, Root: root}, 2, time.Minute)
	nd := filepath.Join(root, "new.example")
	if err := os.Mkdir(nd, 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the new directory is watched
	writeFile(t, filepath.Join(nd, "passwd"), "ofice:x\nservises:x\n", 0o640)
	select {
	case b := <-bursts:
		if strings.Join(b.Mailboxes, " ") != "ofice@new.example servises@new.example" {
			t.Errorf("burst %+v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a new domain's boxes were not seen")
	}
}
