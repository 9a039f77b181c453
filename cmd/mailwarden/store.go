package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
	"mailwarden/internal/events"
	"mailwarden/internal/store"
	"mailwarden/internal/store/backend"
)

// storeInit makes a new, empty store: the explicit act that a data
// directory that exists but holds no store needs, since the daemon will
// not start on one (it may be a disk that is not mounted).
func storeInit(fs *flag.FlagSet) runFunc {
	force := fs.Bool("force", false, "move an existing store aside (never deleted) and start over with no latches, freezes or users")
	return withConfig(fs, func(c *call, cfg config.Config) int {
		id, err := backend.Init(cfg, *force, nil)
		if err != nil {
			return c.fail(err)
		}
		what := fmt.Sprintf("created store %d in %s", id, cfg.DataDir)
		switch {
		case cfg.Store.Kind == config.StoreRedis:
			// Redis data is never moved or deleted: the data directory
			// records which Redis store this host uses.
			what = fmt.Sprintf("recorded Redis store %d in %s", id, cfg.DataDir)
		case *force:
			what += ", the one before moved aside"
		}
		// The new store's audit log starts with who made it.
		return c.auditIn(cfg, what)
	})
}

// storeBackup writes a consistent copy of the store, while the daemon
// runs or not: the way to copy a store, since copying mailwarden.db
// under a running daemon misses what is still in its WAL.
func storeBackup(fs *flag.FlagSet) runFunc {
	return withConfig(fs, func(c *call, cfg config.Config) int {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := backend.Backup(ctx, cfg, c.pos[0]); err != nil {
			return c.fail(err)
		}
		fmt.Fprintf(c.stdout, "backed up the store in %s to %s\n", cfg.DataDir, c.pos[0])
		return 0
	})
}

// storeRestore puts a backup in place of the store; the daemon must be
// stopped, and what it replaces is moved aside.
func storeRestore(fs *flag.FlagSet) runFunc {
	force := fs.Bool("force", false, "restore a backup of another store than the one the directory held")
	return withConfig(fs, func(c *call, cfg config.Config) int {
		if conn, err := net.DialTimeout("unix", adminapi.SocketPath(cfg), time.Second); err == nil {
			conn.Close()
			return c.fail(fmt.Errorf("the daemon is running on %s: stop it first (systemctl stop mailwarden)", cfg.DataDir))
		}
		id, err := backend.Restore(cfg, c.pos[0], *force, nil)
		if err != nil {
			return c.fail(err)
		}
		what := fmt.Sprintf("restored store %d in %s from %s", id, cfg.DataDir, c.pos[0])
		return c.auditIn(cfg, what)
	})
}

// auditIn records what a store command did, already done, in the audit
// log of the store in cfg.DataDir, and reports it.
func (c *call) auditIn(cfg config.Config, what string) int {
	st, err := backend.Open(cfg, backend.Options{})
	if err != nil {
		return c.fail(fmt.Errorf("%s, but opening the store to record it: %w", what, err))
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.audited(ctx, st, cfg, what, nil)
}

// readStore opens the store that serve would, given the same config and
// data directory, and returns what read finds in it: the way the
// commands that only read the store work without the daemon. A code
// other than 0 ends the command (the error is printed): 2 for a bad
// config, 1 for a store that cannot be opened or read.
func readStore[T any](c *call, configPath, dataDir string, read func(context.Context, store.Store, config.Config) (T, error)) (T, int) {
	var v T
	cfg, err := daemon.LoadConfig(configPath, dataDir)
	if err != nil {
		return v, c.usage("%v", err)
	}
	st, err := backend.Open(cfg, backend.Options{})
	if err != nil {
		return v, c.fail(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if v, err = read(ctx, st, cfg); err != nil {
		return v, c.fail(err)
	}
	return v, 0
}

// record puts what a command did, already done, in the audit log of the
// store in cfg.DataDir, without printing it. An error wrapping
// backend.ErrNoStore means there is no store there to record in.
func (c *call) record(cfg config.Config, what string) error {
	st, err := backend.Open(cfg, backend.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := events.NewLog(events.LogOptions{Store: st, Settings: func() config.Events { return cfg.Events }})
	return log.Audit(ctx, events.Admin{Who: c.who(), Action: c.cmd.name, Reason: what, From: "command line"}, nil)
}

// recordOffline records a change an offline command made to files
// outside the store (the MTA queue, passwd files) in the audit log of
// the store in cfg.DataDir, when there is one: the change is made, so a
// failure to record it is reported, not failed on.
func (c *call) recordOffline(cfg config.Config, what string) {
	switch err := c.record(cfg, what); {
	case errors.Is(err, backend.ErrNoStore):
		fmt.Fprintf(c.stderr, "mailwarden %s: not recorded in an audit log: no mailwarden store in %s\n", c.cmd.name, cfg.DataDir)
	case err != nil:
		fmt.Fprintf(c.stderr, "mailwarden %s: done, but recording it in the audit log failed: %v\n", c.cmd.name, err)
	}
}

// audited makes a change through the event log, so that the change and
// its audit entry, naming the system user who ran the command, commit
// together (fn nil: the change is already made and only recorded); then
// it reports what was done. The commands that change the store without
// the daemon (user, store) record their changes so; the dashboard's
// audit page shows them.
func (c *call) audited(ctx context.Context, st store.Store, cfg config.Config, what string, fn func(ctx context.Context) error) int {
	log := events.NewLog(events.LogOptions{Store: st, Settings: func() config.Events { return cfg.Events }})
	err := log.Audit(ctx, events.Admin{Who: c.who(), Action: c.cmd.name, Reason: what, From: "command line"}, fn)
	switch {
	case errors.Is(err, events.ErrUnrecorded):
		fmt.Fprintf(c.stderr, "mailwarden %s: %s, but %s\n", c.cmd.name, what, strings.TrimPrefix(err.Error(), "events: "))
		return 1
	case err != nil:
		return c.fail(err)
	}
	fmt.Fprintln(c.stdout, what)
	return 0
}
