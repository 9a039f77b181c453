package integration_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// Shared by the outbound tests (issue 3): a site whose clients may only
// send as school.test, and a greylist delay of an hour so that no message
// in these tests gets through greylisting by accident.
const (
	siteName    = "lincoln"
	siteContact = "helpdesk@school.test"
	rcptTo      = "user@dest.test"
)

// siteYAML is a mailwarden config with one site over network (which is
// also the only internal network), its contact and its one envelope and
// header From domain, and extra top-level sections.
func siteYAML(network string, extra ...string) string {
	return fmt.Sprintf(`internal_networks: [%q]
greylist:
  delay: 1h
sites:
  - name: %s
    networks: [%q]
    contact: %q
    sender_domains: [school.test]
    header_from_domains: [school.test]
%s`, network, siteName, network, siteContact, strings.Join(extra, "\n"))
}

// jsonList decodes a command's --json output as a list of objects. It
// accepts a bare list, null, or an object holding exactly one list (such
// as {"latches": [...]}), since the exact envelope is the CLI's choice.
func jsonList(t *testing.T, what, out string) []map[string]any {
	t.Helper()
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err == nil {
		return list
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &obj); err != nil {
		t.Fatalf("%s --json is neither a JSON list nor an object: %v\n%s", what, err, out)
	}
	var found []map[string]any
	n := 0
	for _, raw := range obj {
		var l []map[string]any
		if json.Unmarshal(raw, &l) == nil && strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
			found = l
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%s --json: an object with %d lists in it, want a list:\n%s", what, n, out)
	}
	return found
}

// jsonObject decodes a command's --json output as one object; an object
// wrapping a single object (such as {"latch": {...}}) is unwrapped.
func jsonObject(t *testing.T, what, out string) map[string]any {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal([]byte(out), &obj); err != nil {
		t.Fatalf("%s --json is not a JSON object: %v\n%s", what, err, out)
	}
	if len(obj) == 1 {
		for _, v := range obj {
			if inner, ok := v.(map[string]any); ok {
				return inner
			}
		}
	}
	return obj
}

// field returns a JSON field's value as text, matching the name without
// regard to case or underscores ("cleared_by", "ClearedBy"). A missing or
// null field is "".
func field(obj map[string]any, name string) string {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	for k, v := range obj {
		if norm(k) != norm(name) || v == nil {
			continue
		}
		if s, ok := v.(string); ok {
			return s
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	return ""
}

// mentions reports whether any string value of obj (recipient lists
// included) equals s.
func mentions(obj map[string]any, s string) bool {
	for _, v := range obj {
		switch v := v.(type) {
		case string:
			if v == s {
				return true
			}
		case []any:
			for _, x := range v {
				if x == s {
					return true
				}
			}
		}
	}
	return false
}

// latchesFor returns the latches `latch list --json` shows for a client.
func latchesFor(t *testing.T, mw *harness.Mailwarden, client string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range jsonList(t, "latch list", cliOK(t, mw, "latch", "list", "--json").Stdout) {
		if mentions(l, client) {
			out = append(out, l)
		}
	}
	return out
}

// waitLatch waits up to 5s for `latch list` to show a latch for client
// and returns it.
func waitLatch(t *testing.T, mw *harness.Mailwarden, client string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ls := latchesFor(t, mw, client); len(ls) > 0 {
			if len(ls) > 1 {
				t.Errorf("latch list shows %d latches for %s, want 1: %v", len(ls), client, ls)
			}
			return ls[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("latch list shows no latch for %s within 5s:\n%s", client, cliOK(t, mw, "latch", "list").Stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// events runs `mailwarden events` with flags and --json and returns the
// events it lists.
func events(t *testing.T, mw *harness.Mailwarden, flags ...string) []map[string]any {
	t.Helper()
	args := append(append([]string{"events"}, flags...), "--json")
	res := mw.CLIWords(t, 1, args...)
	if res.ExitCode != 0 {
		t.Fatalf("mailwarden %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.ExitCode, res.Stdout, res.Stderr)
	}
	return jsonList(t, "events", res.Stdout)
}

// waitEvent waits up to 5s for `events FLAGS` to list an event that
// satisfies match and returns it.
func waitEvent(t *testing.T, mw *harness.Mailwarden, match func(map[string]any) bool, flags ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := events(t, mw, flags...)
		for _, e := range evs {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(evs, "", "  ")
			t.Fatalf("mailwarden events %s lists no matching event within 5s; it lists:\n%s", strings.Join(flags, " "), b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// decision waits for the mail log's decision about client by check.
func decision(t *testing.T, mw *harness.Mailwarden, client, check string) harness.Record {
	t.Helper()
	return mw.WaitDecision(t, func(r harness.Record) bool {
		return r["client"] == client && r["check"] == check
	}, 5*time.Second)
}

// requireRefused checks that the message was refused with a reply that
// starts with code (such as "550 5.7.1 ") and contains every one of
// texts, and that swaks gave up on it. The refusal may come at MAIL FROM
// or at RCPT TO: a client already latched or frozen is known at MAIL,
// and to the sender either stage means the same.
func requireRefused(t *testing.T, res harness.SwaksResult, code string, texts ...string) string {
	t.Helper()
	cmd, exit := "RCPT TO", 24
	if r := res.Reply("MAIL FROM"); !strings.HasPrefix(r, "250 ") {
		cmd, exit = "MAIL FROM", 23
	}
	res.RequireReply(t, cmd, code)
	reply := res.Reply(cmd)
	for _, s := range texts {
		if !strings.Contains(reply, s) {
			t.Errorf("%s reply %q lacks %q", cmd, reply, s)
		}
	}
	if res.ExitCode != exit {
		t.Errorf("swaks exit %d, want %d (refused at %s)", res.ExitCode, exit, cmd)
	}
	return reply
}

// deliver sends a message and checks that it reached the sink.
func (s *stack) deliver(t *testing.T, client, from string) {
	t.Helper()
	id := harness.UniqueID(t)
	s.send(t, client, from, rcptTo, id).RequireDelivered(t)
	s.sink.WaitForID(t, id, 10*time.Second)
}

// neverArrived checks that no message with X-Test-ID id reached the sink.
func (s *stack) neverArrived(t *testing.T, id string) {
	t.Helper()
	if n := s.sink.Count(func(msg string) bool { return harness.HasHeader(msg, "X-Test-ID", id) }); n != 0 {
		t.Errorf("a refused message (X-Test-ID %s) reached the sink %d times", id, n)
	}
}
