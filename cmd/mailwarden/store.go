package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
	"mailwarden/internal/events"
	"mailwarden/internal/store/backend"
)

// storeInit makes a new, empty store: the explicit act that a data
// directory that exists but holds no store needs, since the daemon will
// not start on one (it may be a disk that is not mounted).
func storeInit(fs *flag.FlagSet) runFunc {
	configPath, dataDir := configFlags(fs)
	force := fs.Bool("force", false, "move an existing store aside (never deleted) and start over with no latches, freezes or users")
	return func(c *call) int {
		cfg, err := daemon.LoadConfig(*configPath, *dataDir)
		if err != nil {
			return c.usage("%v", err)
		}
		id, err := backend.Init(cfg, *force, nil)
		if err != nil {
			return c.fail(err)
		}
		what := fmt.Sprintf("created store %d in %s", id, cfg.DataDir)
		if *force {
			what += ", the one before moved aside"
		}
		// The new store's audit log starts with who made it.
		st, err := backend.Open(cfg, backend.Options{})
		if err != nil {
			return c.fail(err)
		}
		defer st.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		log := events.NewLog(events.LogOptions{Store: st, Settings: func() config.Events { return cfg.Events }})
		if err := log.Audit(ctx, events.Admin{Who: c.who(), Action: c.cmd.name, Reason: what}, nil); err != nil {
			fmt.Fprintf(c.stderr, "mailwarden %s: %s, but %v\n", c.cmd.name, what, err)
			return 1
		}
		fmt.Fprintln(c.stdout, what)
		return 0
	}
}

// storeBackup writes a consistent copy of the store, while the daemon
// runs or not: the way to copy a store, since copying mailwarden.db
// under a running daemon misses what is still in its WAL.
func storeBackup(fs *flag.FlagSet) runFunc {
	configPath, dataDir := configFlags(fs)
	return func(c *call) int {
		cfg, err := daemon.LoadConfig(*configPath, *dataDir)
		if err != nil {
			return c.usage("%v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := backend.Backup(ctx, cfg, c.pos[0]); err != nil {
			return c.fail(err)
		}
		fmt.Fprintf(c.stdout, "backed up the store in %s to %s\n", cfg.DataDir, c.pos[0])
		return 0
	}
}

// storeRestore puts a backup in place of the store; the daemon must be
// stopped, and what it replaces is moved aside.
func storeRestore(fs *flag.FlagSet) runFunc {
	configPath, dataDir := configFlags(fs)
	force := fs.Bool("force", false, "restore a backup of another store than the one the directory held")
	return func(c *call) int {
		cfg, err := daemon.LoadConfig(*configPath, *dataDir)
		if err != nil {
			return c.usage("%v", err)
		}
		if conn, err := net.DialTimeout("unix", adminapi.SocketPath(cfg), time.Second); err == nil {
			conn.Close()
			return c.fail(fmt.Errorf("the daemon is running on %s: stop it first (systemctl stop mailwarden)", cfg.DataDir))
		}
		id, err := backend.Restore(cfg, c.pos[0], *force, nil)
		if err != nil {
			return c.fail(err)
		}
		what := fmt.Sprintf("restored store %d in %s from %s", id, cfg.DataDir, c.pos[0])
		st, err := backend.Open(cfg, backend.Options{})
		if err != nil {
			return c.fail(err)
		}
		defer st.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		log := events.NewLog(events.LogOptions{Store: st, Settings: func() config.Events { return cfg.Events }})
		if err := log.Audit(ctx, events.Admin{Who: c.who(), Action: c.cmd.name, Reason: what}, nil); err != nil {
			fmt.Fprintf(c.stderr, "mailwarden %s: %s, but %v\n", c.cmd.name, what, err)
			return 1
		}
		fmt.Fprintln(c.stdout, what)
		return 0
	}
}
