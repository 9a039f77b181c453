package integration_test

import (
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestRestartKeepsTriplets checks that greylist state lives in the data
// directory: a triplet first seen before a daemon restart passes after
// it, instead of being delayed again from scratch.
func TestRestartKeepsTriplets(t *testing.T) {
	t.Parallel()
	s := startStack(t, viaMilter, greylistYAML(greylistDelay, "127.0.22.20/32", "127.0.22.30"))
	const client, from, to = "127.0.21.5", "before@ext.test", "user@dest.test"

	s.requireGreylisted(t, s.send(t, client, from, to, harness.UniqueID(t)), "milter", client)
	// The greylist entry is at most as old as the refusal.
	refused := time.Now()

	pid := s.mw.PID()
	s.mw.Restart(t)
	if s.mw.PID() == pid {
		t.Fatalf("daemon still has pid %d after the restart", pid)
	}

	time.Sleep(time.Until(refused.Add(greylistDelay + 500*time.Millisecond)))
	id := harness.UniqueID(t)
	s.send(t, client, from, to, id).RequireDelivered(t)
	msg := s.sink.WaitForID(t, id, 10*time.Second)
	if h := harness.HeaderValues(msg, "X-Greylist"); len(h) != 1 {
		t.Errorf("mail delayed across the restart has X-Greylist %q, want one header", h)
	}
}
