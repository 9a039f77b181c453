package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/store"
)

// TestMailboxWatchRecordsBursts: with mailbox.watch on, a burst of new
// mailboxes in the passwd files becomes one "mailbox" event, kept for
// the event retention.
func TestMailboxWatchRecordsBursts(t *testing.T) {
	root := filepath.Join(t.TempDir(), "virtual")
	for i := range 4 {
		dir := filepath.Join(root, fmt.Sprintf("d%d.example", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte("real:x\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t)
	cfg.Mailbox.Root = root
	cfg.Mailbox.Watch = true
	cfg.Mailbox.BurstCount = 4
	cfg.Mailbox.BurstWindow = config.Duration(time.Minute)
	d, stderr, _ := start(t, cfg, "")
	if !strings.Contains(stderr.String(), "mailbox watch started") {
		t.Fatalf("no start line in the log:\n%s", stderr.String())
	}
	for i := range 4 {
		f, err := os.OpenFile(filepath.Join(root, fmt.Sprintf("d%d.example", i), "passwd"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "ofice:x\n")
		f.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := d.store.QueryEvents(context.Background(), store.EventFilter{Kind: store.EventMailbox})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 1 {
			e := evs[0]
			if !strings.Contains(e.Reason, "4 new mailboxes on 4 domains") || !strings.Contains(e.Reason, "ofice@d0.example") ||
				e.Expires.Sub(e.Time) != cfg.Events.Retention.D() {
				t.Errorf("event %+v", e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d mailbox events after 10s; log:\n%s", len(evs), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "burst of new mailboxes") {
		t.Errorf("the burst was not logged:\n%s", stderr.String())
	}
}
