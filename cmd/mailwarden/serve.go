package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"mailwarden/internal/daemon"
)

// shutdownGrace is how long, on SIGTERM or SIGINT, transactions in
// flight (a message between MAIL and end of message, a policy request
// being answered) get to finish. Idle sessions are closed at once.
const shutdownGrace = 30 * time.Second

// forcedStopWait bounds the wait, after a second SIGTERM or SIGINT, for
// the cut-short shutdown to close the store before the process exits.
const forcedStopWait = 2 * time.Second

func serveCmd(fs *flag.FlagSet) runFunc {
	configPath := fs.String("config", "", "config `file` (default: built-in defaults; no file is needed)")
	dataDir := fs.String("data", "", "data `directory` for the embedded store (overrides data_dir)")
	return func(c *call) int { return serve(c, *configPath, *dataDir) }
}

// serve runs the daemon until SIGTERM or SIGINT, reloading its config on
// SIGHUP.
func serve(c *call, configPath, dataDir string) int {
	cfg, err := daemon.LoadConfig(configPath, dataDir)
	if err != nil {
		return c.usage("%v", err)
	}
	if path := os.Getenv("MAILWARDEN_CPUPROFILE"); path != "" {
		stop, err := cpuProfile(path)
		if err != nil {
			return c.fail(err)
		}
		defer stop()
	}
	if path := os.Getenv("MAILWARDEN_MEMPROFILE"); path != "" {
		defer heapProfile(c, path)
	}
	d, err := daemon.Start(cfg, daemon.Options{
		ConfigPath: configPath, DataDir: dataDir, Version: versionString(),
		Stderr: c.stderr, Stdout: c.stdout,
	})
	if err != nil {
		return c.fail(err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	status := 0
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.Reload()
				continue
			}
			d.Log().Info("signal received", "signal", sig.String())
			break wait
		case err := <-d.Errors():
			d.Log().Error("listener failed", "err", err)
			status = 1
			break wait
		}
	}
	return stopDaemon(d, sigs, status)
}

// stopDaemon shuts d down and returns the exit status: status when every
// transaction in flight finished within shutdownGrace, 1 when the grace
// ran out or a second SIGTERM or SIGINT cut the wait short.
func stopDaemon(d *daemon.Daemon, sigs <-chan os.Signal, status int) int {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Shutdown(ctx) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				d.Log().Error("shutdown incomplete", "err", err)
				return 1
			}
			return status
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.Log().Info("reload ignored: shutting down")
				continue
			}
			// An administrator who asks twice wants the process gone;
			// what is still in flight is tempfailed by the MTA.
			d.Log().Warn("second signal: stopping now, closing transactions in flight", "signal", sig.String())
			cancel()
			select {
			case <-done:
			case <-time.After(forcedStopWait):
				d.Log().Error("shutdown did not finish, exiting without it", "waited", forcedStopWait)
			}
			return 1
		}
	}
}

// cpuProfile writes a CPU profile of the daemon to path until stop is
// called, for `go tool pprof` (MAILWARDEN_CPUPROFILE; BENCHMARKS.md,
// "End to end").
func cpuProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("MAILWARDEN_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("MAILWARDEN_CPUPROFILE: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// heapProfile writes what the daemon's heap holds, after a collection,
// to path as it stops (MAILWARDEN_MEMPROFILE; BENCHMARKS.md).
func heapProfile(c *call, path string) {
	f, err := os.Create(path)
	if err == nil {
		runtime.GC()
		err = pprof.WriteHeapProfile(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "MAILWARDEN_MEMPROFILE: %v\n", err)
	}
}
