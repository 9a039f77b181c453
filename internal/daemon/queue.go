package daemon

import (
	"context"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/config"
	"mailwarden/internal/mtaqueue"
)

// queueOptions connect the admin API and the dashboard to the MTA queue
// the config's queue: section names. The watcher lists it in the
// background, at most once per mtaqueue.WatchInterval, never on the mail
// path; a host without the MTA's queue tools (a test machine, an MX
// whose queue lives elsewhere) only gets "queue not available" on the
// dashboard. The queue is reopened from the live config on each use, so
// a reload applies.
func (d *Daemon) queueOptions(cfg config.Config) adminapi.QueueOptions {
	open := func() (mtaqueue.Queue, error) { return mtaqueue.Open(d.cfg.Load().Queue) }
	// The command shown when the daemon may not purge itself uses the
	// same queue and records in the same store.
	var args []string
	if d.opts.ConfigPath != "" {
		args = append(args, "--config", d.opts.ConfigPath)
	}
	args = append(args, "--data", cfg.DataDir)
	return adminapi.QueueOptions{
		Watch:       mtaqueue.NewWatcher(mtaqueue.WatchOptions{Open: open, Log: d.log}),
		Open:        open,
		CommandArgs: args,
	}
}

// runQueueWatch keeps the queue summary current until ctx ends.
func (d *Daemon) runQueueWatch(ctx context.Context, w *mtaqueue.Watcher) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		w.Run(ctx)
	}()
}
