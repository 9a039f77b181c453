package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"mailwarden/internal/daemon"
)

// shutdownGrace is how long sessions in flight get to finish on SIGTERM.
const shutdownGrace = 30 * time.Second

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configPath := fs.String("config", "", "config `file` (default: built-in defaults; no file is needed)")
	dataDir := fs.String("data", "", "data `directory` for the embedded store (overrides data_dir)")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return 2
	}
	if len(pos) != 0 {
		fmt.Fprintf(stderr, "mailwarden serve: unexpected argument %q\n", pos[0])
		return 2
	}
	cfg, err := daemon.LoadConfig(*configPath, *dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "mailwarden serve: %v\n", err)
		return 2
	}
	d, err := daemon.Start(cfg, daemon.Options{
		ConfigPath: *configPath, DataDir: *dataDir, Version: versionString(),
		Stderr: stderr, Stdout: stdout,
	})
	if err != nil {
		fmt.Fprintf(stderr, "mailwarden serve: %v\n", err)
		return 1
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	status := 0
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.Reload()
				continue
			}
			d.Log().Info("signal received", "signal", sig.String())
		case err := <-d.Errors():
			d.Log().Error("listener failed", "err", err)
			status = 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		if err := d.Shutdown(ctx); err != nil {
			d.Log().Error("shutdown incomplete", "err", err)
			status = 1
		}
		cancel()
		return status
	}
}
