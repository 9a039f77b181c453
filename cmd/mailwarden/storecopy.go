package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
	"mailwarden/internal/store"
	"mailwarden/internal/store/backend"
	"mailwarden/internal/store/sqlite"
	"mailwarden/internal/store/storecopy"
)

// storeSpecHelp says what --from and --to take.
const storeSpecHelp = "DIR or sqlite:DIR (the embedded store in that data directory), config:FILE (the store that config names), or redis://… / rediss://…"

// stagingName is the directory inside a new SQLite target where the
// copy is made. The files move up into the data directory only once
// the copy is verified, so a copy cut short leaves a directory that no
// daemon opens, with a name that says what it is.
const stagingName = ".store-copy-incomplete"

// storeCopy copies one store into another, new or empty one: the move
// from the embedded store to Redis, or back. The source is only read.
func storeCopy(fs *flag.FlagSet) runFunc {
	from := fs.String("from", "", "the store to copy from; `SPEC` is "+storeSpecHelp)
	to := fs.String("to", "", "the store to copy into, new or empty; `SPEC` as for --from")
	yes := fs.Bool("yes", false, "copy; without it, only check both stores and count what would be copied")
	return func(c *call) int {
		if *from == "" || *to == "" {
			return c.usage("--from and --to are both required (%s)", storeSpecHelp)
		}
		src, err := parseStoreSpec(*from)
		if err != nil {
			return c.usage("--from: %v", err)
		}
		dst, err := parseStoreSpec(*to)
		if err != nil {
			return c.usage("--to: %v", err)
		}
		if src.sameAs(dst) {
			return c.usage("--from and --to name the same store")
		}
		// A store in use changes while it is read: the copy would miss
		// what the daemon writes meanwhile and could not be verified.
		for _, s := range []storeSpec{src, dst} {
			if err := s.checkStopped(); err != nil {
				return c.fail(err)
			}
		}
		return c.copyStore(src, dst, *yes)
	}
}

// storeSpec is a store named on the command line.
type storeSpec struct {
	text string        // as given
	cfg  config.Config // how backend.Open finds it
}

// parseStoreSpec reads a --from or --to value.
func parseStoreSpec(s string) (storeSpec, error) {
	spec := storeSpec{text: s}
	switch {
	case s == "":
		return spec, errors.New("empty store")
	case strings.HasPrefix(s, "config:"):
		cfg, err := daemon.LoadConfig(strings.TrimPrefix(s, "config:"), "")
		if err != nil {
			return spec, err
		}
		if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
			return spec, err
		}
		spec.cfg = cfg
	case strings.HasPrefix(s, "redis://"), strings.HasPrefix(s, "rediss://"):
		cfg, err := redisSpec(s)
		if err != nil {
			return spec, err
		}
		spec.cfg = cfg
	default:
		dir := strings.TrimPrefix(s, "sqlite:")
		if dir == "" {
			return spec, fmt.Errorf("%q names no directory", s)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return spec, err
		}
		spec.cfg = config.Default()
		spec.cfg.Store.Kind, spec.cfg.Store.Backend = config.StoreSQLite, config.StoreSQLite
		spec.cfg.DataDir = abs
	}
	return spec, nil
}

// redisSpec is the config of the Redis store a redis:// or rediss://
// URL names, with the default prefix. It has no data directory: a copy
// neither reads nor writes a host's identity marker.
func redisSpec(url string) (config.Config, error) {
	cfg := config.Default()
	cfg.Store.Kind, cfg.Store.Backend = config.StoreRedis, config.StoreRedis
	cfg.Store.URL = url
	cfg.DataDir = ""
	for _, e := range cfg.Validate() {
		if strings.HasPrefix(e.Key, "store") {
			return config.Config{}, fmt.Errorf("%s: %s", url, e.Msg)
		}
	}
	return cfg, nil
}

// sameAs reports whether s and o name one SQLite data directory.
func (s storeSpec) sameAs(o storeSpec) bool {
	return s.cfg.Store.Kind == config.StoreSQLite && o.cfg.Store.Kind == config.StoreSQLite && s.cfg.DataDir == o.cfg.DataDir
}

// checkStopped refuses a store whose daemon answers on its admin
// socket, as `store restore` does.
func (s storeSpec) checkStopped() error {
	sock := adminapi.SocketPath(s.cfg)
	if conn, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("a daemon is running on %s (its admin socket %s answers): stop it first (systemctl stop mailwarden); a store in use changes while it is copied", s.text, sock)
	}
	return nil
}

// newDir reports whether s is a SQLite store that the copy creates.
func (s storeSpec) newDir() bool { return s.cfg.Store.Kind == config.StoreSQLite }

// copyStore opens both stores and copies, or with yes false only counts.
func (c *call) copyStore(src, dst storeSpec, yes bool) int {
	from, err := backend.Open(src.cfg, backend.Options{})
	if err != nil {
		return c.fail(fmt.Errorf("opening %s: %w", src.text, err))
	}
	defer from.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Hour)
	defer cancel()
	now := time.Now()
	if dst.newDir() {
		if err := checkNewDir(dst.cfg.DataDir); err != nil {
			return c.fail(err)
		}
	}
	if !yes {
		return c.surveyCopy(ctx, from, src, dst, now)
	}

	cfg := dst.cfg
	if dst.newDir() {
		// Made as `store init` makes a store, identity marker included,
		// in the staging directory.
		cfg.DataDir = filepath.Join(dst.cfg.DataDir, stagingName)
		if _, err := backend.Init(cfg, false, nil); err != nil {
			return c.fail(fmt.Errorf("creating the new store for %s: %w", dst.text, err))
		}
	}
	to, err := backend.Open(cfg, backend.Options{})
	if err != nil {
		return c.fail(fmt.Errorf("opening %s: %w", dst.text, err))
	}
	defer to.Close()
	kind := ""
	counts, err := storecopy.Copy(ctx, from, to, now, func(k string, _ int) {
		if k != kind {
			kind = k
			fmt.Fprintf(c.stderr, "copying %s\n", strings.ReplaceAll(k, "_", " "))
		}
	})
	printCopyCounts(c.stdout, counts, err == nil || errors.Is(err, storecopy.ErrMismatch))
	if err != nil {
		return c.copyFailed(dst, cfg, err)
	}
	fmt.Fprintf(c.stdout, "verified: the copy holds what %s holds, %s\n", src.text, plural(counts.Total(), "record"))
	what := fmt.Sprintf("copied store %s to %s: %s, verified", src.text, dst.text, plural(counts.Total(), "record"))
	// The last entry of the copy's audit trail says it is complete; a
	// copy cut short lacks it.
	code := c.audited(ctx, to, cfg, what, nil)
	if err := to.Close(); err != nil {
		return c.copyFailed(dst, cfg, fmt.Errorf("closing the copy: %w", err))
	}
	if code != 0 {
		return code
	}
	if dst.newDir() {
		if err := moveUp(cfg.DataDir, dst.cfg.DataDir); err != nil {
			return c.fail(fmt.Errorf("the copy is complete in %s, but moving it into %s: %w; move %s and %s there by hand",
				cfg.DataDir, dst.cfg.DataDir, err, sqlite.FileName, backend.MarkerName))
		}
	}
	return 0
}

// copyFailed reports a copy that did not complete: the target holds part
// of the source, and must not look like a store to start a daemon on.
func (c *call) copyFailed(dst storeSpec, cfg config.Config, err error) int {
	c.fail(err)
	if dst.newDir() {
		fmt.Fprintf(c.stderr, "mailwarden %s: the copy is NOT complete; the source is unchanged. The part copied is in %s, which no daemon opens; remove it before trying again\n",
			c.cmd.name, cfg.DataDir)
	} else {
		fmt.Fprintf(c.stderr, "mailwarden %s: the copy is NOT complete; the source is unchanged. %s holds part of it: do not start a daemon on it, and empty it before trying again\n",
			c.cmd.name, dst.text)
	}
	return 1
}

// surveyCopy counts what a copy would copy and checks the target,
// writing nothing: the command without --yes.
func (c *call) surveyCopy(ctx context.Context, from store.Store, src, dst storeSpec, now time.Time) int {
	counts, err := storecopy.Survey(ctx, from, now)
	if err != nil {
		return c.fail(fmt.Errorf("reading %s: %w", src.text, err))
	}
	if !dst.newDir() {
		to, err := backend.Open(dst.cfg, backend.Options{})
		if err != nil {
			return c.fail(fmt.Errorf("opening %s: %w", dst.text, err))
		}
		defer to.Close()
		if _, ok := to.(store.Importer); !ok {
			return c.fail(fmt.Errorf("%s: %w", dst.text, storecopy.ErrNoImporter))
		}
		if err := storecopy.CheckEmpty(ctx, to, now); err != nil {
			return c.fail(fmt.Errorf("%s: %w", dst.text, err))
		}
	}
	printTable(c.stdout, counts, "", "KIND\tRECORDS", func(n storecopy.Count) []string {
		return []string{strings.ReplaceAll(n.Kind, "_", " "), strconv.Itoa(n.Source)}
	})
	total := 0
	for _, n := range counts {
		total += n.Source
	}
	into := dst.text + " (empty)"
	if dst.newDir() {
		into = "a new store in " + dst.cfg.DataDir
	}
	fmt.Fprintf(c.stdout, "would copy %s from %s into %s; nothing written: run again with --yes to copy\n",
		plural(total, "record"), src.text, into)
	return 0
}

// printCopyCounts prints what was copied of each kind and, once
// verified, what each side counted afterwards.
func printCopyCounts(w io.Writer, counts storecopy.Counts, verified bool) {
	printTable(w, counts, "", "KIND\tCOPIED\tSOURCE\tTARGET\tCHECK", func(n storecopy.Count) []string {
		src, dst, check := strconv.Itoa(n.Source), strconv.Itoa(n.Target), "ok"
		switch {
		case !verified:
			src, dst, check = "-", "-", "not verified"
		case !n.OK():
			check = "MISMATCH"
		}
		return []string{strings.ReplaceAll(n.Kind, "_", " "), strconv.Itoa(n.Copied), src, dst, check}
	})
}

// checkNewDir refuses a data directory that holds a store or a copy cut
// short: a copy goes into a new store, never over one.
func checkNewDir(dir string) error {
	for _, name := range []string{backend.MarkerName, sqlite.FileName, stagingName} {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			if name == stagingName {
				return fmt.Errorf("%s is a copy that was cut short: remove it before trying again", p)
			}
			return fmt.Errorf("%s already holds a store (%s): copy into a new directory", dir, name)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// moveUp moves the verified store from staging into dir, the marker
// last so that dir never names a database it does not hold, and removes
// the then empty staging directory.
func moveUp(staging, dir string) error {
	for _, name := range []string{sqlite.FileName, sqlite.FileName + "-wal", sqlite.FileName + "-shm", backend.MarkerName} {
		err := os.Rename(filepath.Join(staging, name), filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return os.Remove(staging)
}
