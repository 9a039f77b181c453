package integration_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestHostAllEvidence is PRODUCT.md's suspect host: one machine that hit
// the trap, sent a forgery and has a backdoor open shows all three with
// its site and its last mail user, is cleared in one step when the
// administrator declares it disinfected, and its evidence reads in order
// on the outbreak timeline.
func TestHostAllEvidence(t *testing.T) {
	t.Parallel()
	const client, user = "127.0.75.5", "pat@school.test"
	port := listener(t, client+":0")
	log := filepath.Join(harness.InstanceDir(t, "dovecot"), "dovecot.log")
	if err := os.WriteFile(log, []byte(dovecotLogin(time.Now().Add(-time.Hour), user, client)), 0o644); err != nil {
		t.Fatalf("writing the login log: %v", err)
	}
	trap := trapAddr(t)
	s := startStack(t, viaMilter, siteYAML("127.0.75.0/24", trapYAML(trap), scanYAML(port, "127.0.75.0/29"), mailLoginYAML(log)))

	// The evidence comes in a known order, a second apart, so that the
	// timeline's order can be checked.
	g, h, m := trapSession(t, trap, client, "pc5.school.test", "worm@evil.test")
	requireTrapped(t, client, g, h, m)
	waitHost(t, s.mw, client, "its trap hit", 10*time.Second, func(h map[string]any) bool {
		return number(lookup(trapOf(h), "count")) == 1
	})
	time.Sleep(1100 * time.Millisecond)

	requireRefused(t, s.send(t, client, "worm@evil.test", rcptTo, harness.UniqueID(t)), "550 5.7.1 ",
		"Sender domain evil.test is not allowed from "+client)
	ref := field(waitLatch(t, s.mw, client), "id")
	time.Sleep(1100 * time.Millisecond)

	res := s.mw.CLIWords(t, 1, "scan", "127.0.75.0/29")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, client) {
		t.Fatalf("mailwarden scan 127.0.75.0/29: exit %d, want %s:%d open\nstdout:\n%s\nstderr:\n%s", res.ExitCode, client, port, res.Stdout, res.Stderr)
	}

	host := waitHost(t, s.mw, client, "trap, forgery, latch, backdoor and its mail user", 10*time.Second, func(h map[string]any) bool {
		return evidence(h, "trap") >= 1 && evidence(h, "forgery") >= 1 && evidence(h, "latch") >= 1 &&
			evidence(h, "backdoor") >= 1 && lastUser(h) != ""
	})
	if got := text(lookup(host, "site")); got != siteName {
		t.Errorf("hosts show %s: site %q, want %q", client, got, siteName)
	}
	if got := lastUser(host); got != user {
		t.Errorf("hosts show %s: last mail user %q, want %q", client, got, user)
	}
	if !openPort(host, port) {
		t.Errorf("hosts show %s does not list port %d open: %v", client, port, host)
	}
	if got := text(lookup(host, "status")); got != "latched" {
		t.Errorf("hosts show %s: status %q, want latched", client, got)
	}
	out := cliOK(t, s.mw, "hosts", "show", client).Stdout
	for _, want := range []string{client, siteName, user, "trap", "forgery", "backdoor", strconv.Itoa(port), ref} {
		if !strings.Contains(out, want) {
			t.Errorf("hosts show %s does not show %q:\n%s", client, want, out)
		}
	}

	cliOK(t, s.mw, "hosts", "note", client, "owner says the screen flickers")
	waitHost(t, s.mw, client, "the note", 5*time.Second, func(h map[string]any) bool {
		return strings.Contains(text(h["notes"]), "screen flickers")
	})

	cliOK(t, s.mw, "hosts", "disinfect", client, "--note", "reimaged")
	for _, l := range latchesFor(t, s.mw, client) {
		if field(l, "cleared_at") == "" {
			t.Errorf("after hosts disinfect %s, latch list still shows an active latch: %v", client, l)
		}
	}
	host, _, _ = hostShow(t, s.mw, client)
	if got := text(lookup(host, "status")); got != "disinfected" {
		t.Errorf("after hosts disinfect, hosts show %s: status %q, want disinfected: %v", client, got, host)
	}
	if out := cliOK(t, s.mw, "hosts", "show", client).Stdout; !strings.Contains(out, "reimaged") {
		t.Errorf("after hosts disinfect --note reimaged, hosts show %s does not show the note:\n%s", client, out)
	}
	s.deliver(t, client, "teacher@school.test")

	var kinds []string
	var last time.Time
	for _, e := range jsonList(t, "hosts timeline", cliOK(t, s.mw, "hosts", "timeline", "--json").Stdout) {
		if text(lookup(e, "ip", "client")) != client {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, text(lookup(e, "time", "at", "first_seen")))
		if err != nil {
			t.Errorf("hosts timeline --json: entry without a time: %v", e)
		}
		if at.Before(last) {
			t.Errorf("hosts timeline --json: %v comes after an entry of %v", e, last)
		}
		last = at
		kinds = append(kinds, text(lookup(e, "kind")))
	}
	if want := []string{"trap", "forgery", "backdoor"}; !slices.Equal(kinds, want) {
		t.Errorf("hosts timeline --json lists %s's evidence as %q, want %q in that order", client, kinds, want)
	}
	if tl := cliOK(t, s.mw, "hosts", "timeline").Stdout; !strings.Contains(tl, client) {
		t.Errorf("hosts timeline does not show %s:\n%s", client, tl)
	}
}

// TestHostRefusedWhileLatched counts evidence by what happened: a
// machine that sent one forgery, was latched, and then had three
// legitimate messages refused because of the latch did one forgery and
// was latched once; the three refusals are counted apart, as
// docs/hosts.md says. Through the policy server, which asks at RCPT.
func TestHostRefusedWhileLatched(t *testing.T) {
	t.Parallel()
	const client = "127.0.76.5"
	s := startStack(t, viaPolicy, siteYAML("127.0.76.0/24"))

	requireRefused(t, s.send(t, client, "worm@evil.test", rcptTo, harness.UniqueID(t)), "550 5.7.1 ",
		"Sender domain evil.test is not allowed from "+client)
	ref := field(waitLatch(t, s.mw, client), "id")
	for range 3 {
		requireRefused(t, s.send(t, client, "teacher@school.test", rcptTo, harness.UniqueID(t)), "550 5.7.1 ",
			"Mail from "+client+" is blocked: ", "ref "+ref)
	}

	want := map[string]int{"forgery": 1, "latch": 1, "refused_while_latched": 3}
	same := func(h map[string]any) bool {
		ev, _ := lookup(h, "evidence").(map[string]any)
		if len(ev) != len(want) {
			return false
		}
		for k, n := range want {
			if evidence(h, k) != n {
				return false
			}
		}
		return true
	}
	host := waitHost(t, s.mw, client, "three refusals while latched", 10*time.Second, func(h map[string]any) bool {
		return evidence(h, "refused_while_latched") >= 3
	})
	if !same(host) {
		t.Errorf("hosts show %s --json: evidence %v, want %v", client, lookup(host, "evidence"), want)
	}
	var listed map[string]any
	for _, h := range jsonList(t, "hosts list", cliOK(t, s.mw, "hosts", "list", "--json").Stdout) {
		if text(lookup(h, "ip")) == client {
			listed = h
		}
	}
	if listed == nil || !same(listed) {
		t.Errorf("hosts list --json shows %s with evidence %v, want %v", client, lookup(listed, "evidence"), want)
	}
	if out := cliOK(t, s.mw, "hosts", "show", client).Stdout; !strings.Contains(out, "forgery 1, latch 1, refused_while_latched 3") {
		t.Errorf("hosts show %s does not count one forgery, one latch and three refusals:\n%s", client, out)
	}
	if out := cliOK(t, s.mw, "hosts", "list").Stdout; !regexp.MustCompile(regexp.QuoteMeta(client) + `\s+\S+\s+latched\s+-\s+1\s`).MatchString(out) {
		t.Errorf("hosts list does not show %s latched with one forgery:\n%s", client, out)
	}
}
