package daemon

import (
	"context"
	"errors"
	"os"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/mailbox"
)

// incidentNew is how many new addresses the incident report lists; the
// count covers them all.
const incidentNew = 50

// mailboxNews finds the mailboxes created since the last snapshot for
// the incident report, reading the passwd files and the snapshot file
// as `mailwarden mailbox audit` does, from the live config. Whatever
// cannot be read is said, not failed on: the daemon may not be allowed
// to read the mail host's files.
func (d *Daemon) mailboxNews(_ context.Context, _ time.Time) adminapi.MailboxNews {
	cfg := d.cfg.Load()
	mb := cfg.Mailbox
	out := adminapi.MailboxNews{Snapshot: cfg.MailboxPath(mb.Snapshot, "mailbox-snapshot"), New: []string{}}
	inv, err := mailbox.Read(mailbox.Source{Layout: mb.Layout, Root: mb.Root, Home: mb.Home, PasswdFiles: mb.PasswdFiles}, nil)
	if err != nil {
		out.Error = "not available: " + err.Error()
		return out
	}
	out.Available, out.Mailboxes = true, len(inv.Mailboxes)
	snap, err := mailbox.ReadSnapshot(out.Snapshot)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return out
	case err != nil:
		out.Available, out.Error = false, "not available: "+err.Error()
		return out
	}
	out.HasSnapshot, out.Taken = true, snap.Taken
	for _, m := range inv.Mailboxes {
		if snap.Has(m) {
			continue
		}
		out.NewCount++
		if len(out.New) < incidentNew {
			out.New = append(out.New, m.Address())
		}
	}
	return out
}
