package writefail

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWriteFailuresSummary: the first failure is logged at once, the
// rest of an interval as one line with counts by kind, and an interval
// without failures lets the next one be logged at once again.
func TestWriteFailuresSummary(t *testing.T) {
	var logs logLines
	f := New(slog.New(slog.NewTextHandler(&logs, nil)), time.Hour)
	boom := errors.New("disk I/O error")
	f.Add(Triplet, boom)
	for range 40 {
		f.Add(Triplet, boom)
		f.Add(Event, boom)
	}
	f.Add(Latch, nil)              // a success
	f.Add("", boom)                // a flush or the probe
	f.Add(Latch, context.Canceled) // the caller gave up
	f.Add(Latch, context.DeadlineExceeded)
	if n := len(logs.matching("WARN")); n != 1 {
		t.Fatalf("%d lines after 81 failures in one interval, want 1:\n%s", n, logs.b.String())
	}
	f.Summarise()
	sum := logs.matching("WARN", "store writes failed")
	if len(sum) != 1 || !strings.Contains(sum[0], "failed=80") || !strings.Contains(sum[0], `by_kind="event=40 triplet=40"`) {
		t.Fatalf("summary = %q, want failed=80 by kind", sum)
	}
	f.Summarise() // an interval with no failures
	f.Add(Freeze, boom)
	if n := len(logs.matching("WARN", "store write failed", "kind=freeze")); n != 1 {
		t.Errorf("a failure after a quiet interval was not logged at once:\n%s", logs.b.String())
	}
	f.Add(Freeze, boom)
	f.Stop()
	if n := len(logs.matching("WARN", "failed=1", "freeze=1")); n != 1 {
		t.Errorf("stop did not log the failure held back:\n%s", logs.b.String())
	}
	got := f.Counts()
	if got[Triplet] != 41 || got[Event] != 40 || got[Freeze] != 2 || got[Latch] != 0 {
		t.Errorf("counts = %v", got)
	}
}

type logLines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// matching returns the lines holding every part.
func (l *logLines) matching(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.b.String()) {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}
