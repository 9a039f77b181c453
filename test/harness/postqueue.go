package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// QueueEntry is one message in a Postfix queue as postqueue -j lists it
// (postqueue(1), "JSON object").
type QueueEntry struct {
	// QueueName is "maildrop", "hold", "incoming", "active" or "deferred".
	QueueName string `json:"queue_name"`
	QueueID   string `json:"queue_id"`
	Sender    string `json:"sender"`
	// Recipients lists each recipient with its delay reason, if any.
	Recipients []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

// Queue returns every message in the instance's queues.
func (p *Postfix) Queue(t testing.TB) []QueueEntry {
	t.Helper()
	out := p.run(t, "postqueue", "-c", p.ConfigDir, "-j")
	var entries []QueueEntry
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e QueueEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("postqueue -j printed a line that is not JSON: %v\n%s", err, line)
		}
		entries = append(entries, e)
	}
	return entries
}

// Held returns the messages in the hold queue, where a milter's
// quarantine puts them (SMFIR_QUARANTINE; postsuper(1) -h).
func (p *Postfix) Held(t testing.TB) []QueueEntry {
	t.Helper()
	var held []QueueEntry
	for _, e := range p.Queue(t) {
		if e.QueueName == "hold" {
			held = append(held, e)
		}
	}
	return held
}

// WaitHeld polls until the hold queue has a message that satisfies match
// and returns it, failing the test after timeout.
func (p *Postfix) WaitHeld(t testing.TB, match func(QueueEntry) bool, timeout time.Duration) QueueEntry {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range p.Held(t) {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching message in Postfix's hold queue within %v; queue: %+v", timeout, p.Queue(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// QueuedMessage returns the header section and body of a queued message
// (postcat -hb), to check which message was held.
func (p *Postfix) QueuedMessage(t testing.TB, queueID string) string {
	t.Helper()
	return p.run(t, "postcat", "-c", p.ConfigDir, "-h", "-b", "-q", queueID)
}

// run runs a Postfix command-line tool against this instance for at most
// 30s and returns its standard output.
func (p *Postfix) run(t testing.TB, name string, args ...string) string {
	t.Helper()
	bin, err := Program(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+p.ConfigDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// Flush asks this instance to try every deferred message again now
// (postqueue -f), as an administrator does after fixing what held mail.
func (p *Postfix) Flush(t testing.TB) {
	t.Helper()
	p.run(t, "postqueue", "-c", p.ConfigDir, "-f")
}
