package daemon

import (
	"context"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/mailbox"
	"mailwarden/internal/store"
)

// startMailbox watches the passwd files when mailbox.watch is on and
// records a "mailbox" event for every burst of new mailboxes: the sign
// of an attacker with control-panel rights creating boxes to spam from
// (PRODUCT.md, Day B). There are no alerts yet; the event and the log
// line are what an administrator sees. A watch that cannot start is
// logged and does not stop the daemon: mail flows without it.
func (d *Daemon) startMailbox(ctx context.Context, cfg config.Config) {
	mb := cfg.Mailbox
	if !mb.Watch {
		return
	}
	w, err := mailbox.NewWatcher(mailbox.WatchOptions{
		Source:      mailbox.Source{Layout: mb.Layout, Root: mb.Root, Home: mb.Home, PasswdFiles: mb.PasswdFiles},
		BurstCount:  mb.BurstCount,
		BurstWindow: mb.BurstWindow.D(),
		Log:         d.log,
		OnBurst: func(b mailbox.WatchBurst) {
			ev := store.Event{Time: b.Time, Kind: store.EventMailbox, Check: "mailbox watch", Reason: b.Summary()}
			actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := d.events.Record(actx, ev); err != nil {
				d.log.Error("recording a mailbox burst failed", "err", err, "reason", ev.Reason)
			}
		},
	})
	if err != nil {
		d.log.Error("mailbox watch not started", "layout", mb.Layout, "err", err)
		return
	}
	d.log.Info("mailbox watch started", "layout", mb.Layout, "passwd_files", w.Files(),
		"burst_count", mb.BurstCount, "burst_window", mb.BurstWindow.String())
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer w.Close()
		w.Run(ctx)
	}()
}
