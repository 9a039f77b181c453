package daemon

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/mtaqueue"
)

// TestStartsWithoutQueueTools: a host without Postfix's queue programs
// starts and serves mail, and the queue summary says why there is none;
// the command offered for root names the daemon's config and store.
func TestStartsWithoutQueueTools(t *testing.T) {
	cfg := testConfig(t)
	missing := filepath.Join(t.TempDir(), "sbin")
	cfg.Queue.Postqueue, cfg.Queue.Postsuper = filepath.Join(missing, "postqueue"), filepath.Join(missing, "postsuper")
	path := filepath.Join(t.TempDir(), "mailwarden.yaml")
	writeConfig(t, path, cfg)
	d, _, _ := start(t, cfg, path)
	if got := policyAction(t, cfg.Listen.Policy, "192.0.2.1"); got == "" {
		t.Fatal("no policy answer")
	}
	st, err := d.adminSrv.QueueStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := "queue not available: postqueue not found at " + cfg.Queue.Postqueue; st.Available || !strings.HasPrefix(st.Error, want) {
		t.Errorf("queue status %+v, want error %q", st, want)
	}
	_, err = d.adminSrv.PurgeQueue(context.Background(), "root", "", adminapi.QueuePurgeRequest{QueueFilter: adminapi.QueueFilter{Sender: "*@spam.example"}})
	if err == nil || !strings.Contains(err.Error(), "postqueue not found") {
		t.Errorf("purge without postqueue: %v", err)
	}
	if cmd := d.adminSrv.QueueRootCommand(mtaqueue.Filter{Sender: "*@spam.example"}); cmd != "mailwarden queue purge --config "+path+" --data "+cfg.DataDir+" --sender '*@spam.example' --apply" {
		t.Errorf("root command %q", cmd)
	}
}
