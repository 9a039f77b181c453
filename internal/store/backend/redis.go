package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/store"
	redisstore "mailwarden/internal/store/redis"
)

// RedisOptions turns the store section of cfg into the Redis store's
// options, reading the password file.
func RedisOptions(cfg config.Config, log *slog.Logger) (redisstore.Options, error) {
	s := cfg.Store
	o := redisstore.Options{
		URL: s.URL, Addrs: s.Addresses, MasterName: s.MasterName, Username: s.Username, Password: s.Password,
		DB: s.DB, Prefix: s.Prefix, DialTimeout: time.Duration(s.DialTimeout), Timeout: time.Duration(s.Timeout),
		TLS: redisstore.TLS{Enabled: s.TLS.Enabled, CAFile: s.TLS.CAFile, CertFile: s.TLS.CertFile,
			KeyFile: s.TLS.KeyFile, ServerName: s.TLS.ServerName},
		Log: log,
	}
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return o, fmt.Errorf("store.password_file: %w", err)
		}
		o.Password = strings.TrimRight(string(b), "\r\n")
	}
	return o, nil
}

// redisName names a Redis store in messages: where it is and its prefix.
func redisName(cfg config.Config) string {
	where := cfg.Store.URL
	if where == "" {
		where = strings.Join(cfg.Store.Addresses, ",")
	} else if i := strings.LastIndex(where, "@"); i >= 0 {
		where = where[:strings.Index(where, "//")+2] + where[i+1:] // no password in messages
	}
	prefix := cfg.Store.Prefix
	if prefix == "" {
		prefix = redisstore.DefaultPrefix
	}
	return fmt.Sprintf("the Redis store at %s (prefix %q)", where, prefix)
}

func dialRedis(cfg config.Config, log *slog.Logger) (*redisstore.Store, error) {
	o, err := RedisOptions(cfg, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return redisstore.Open(ctx, o)
}

// openRedis opens the Redis store and checks it against the marker in
// the data directory, which names the identity the store had when this
// host last used it: a Redis that came back empty (restarted without
// persistence, flushed) has a new identity, and the daemon refuses to
// start with it rather than forget every latch and freeze. A data
// directory without a marker (a new host, or a second MX joining a
// shared Redis) records the identity it finds, when the daemon opens
// the store or Create is set.
func openRedis(cfg config.Config, o Options, log *slog.Logger) (store.Store, error) {
	st, err := dialRedis(cfg, log)
	if err != nil {
		return nil, err
	}
	if cfg.DataDir == "" {
		// A store named by URL alone (store copy): no host's marker.
		return st, nil
	}
	m, hasMarker, err := readMarker(cfg.DataDir)
	if err != nil {
		st.Close()
		return nil, err
	}
	switch {
	case hasMarker && m.ID != st.ID():
		what := fmt.Sprintf("holds store %d", st.ID())
		if st.Made() {
			what = "held nothing of mailwarden's (restarted without persistence, or flushed?)"
		}
		st.Close()
		return nil, fmt.Errorf("%w: %s used store %d (created %s), but %s %s; refusing to start empty and forget every latch: "+
			"restore Redis's RDB or AOF, or start over with no latches, freezes or users with `mailwarden store init --force`",
			ErrLost, cfg.DataDir, m.ID, m.Created.Format(time.RFC3339), redisName(cfg), what)
	case !hasMarker && (o.Daemon || o.Create):
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			st.Close()
			return nil, fmt.Errorf("creating data directory %s: %w", cfg.DataDir, err)
		}
		if err := writeMarker(cfg.DataDir, marker{ID: st.ID(), Created: time.Now()}); err != nil {
			st.Close()
			return nil, err
		}
		verb := "joined"
		if st.Made() {
			verb = "created"
		}
		log.Info(verb+" a Redis store", "store", st.ID(), "at", redisName(cfg))
	}
	return st, nil
}

// initRedis is `store init` for Redis: it makes the identity if the
// prefix has none, and records it in the data directory. It never
// deletes anything in Redis, --force or not: a prefix that holds data
// is refused, and the error says what to do instead.
func initRedis(cfg config.Config, force bool, log *slog.Logger) (int32, error) {
	dir := cfg.DataDir
	m, hasMarker, err := readMarker(dir)
	if err != nil && !force {
		return 0, err
	}
	st, err := dialRedis(cfg, log)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	empty, err := st.Empty(context.Background())
	if err != nil {
		return 0, fmt.Errorf("looking into %s: %w", redisName(cfg), err)
	}
	switch {
	case hasMarker && m.ID == st.ID() && !force:
		return 0, fmt.Errorf("%s already uses store %d in %s", dir, m.ID, redisName(cfg))
	case hasMarker && !force:
		return 0, fmt.Errorf("%s used store %d, but %s is store %d (lost its data?); restore Redis's RDB or AOF, "+
			"or start over with no latches, freezes or users with `store init --force`", dir, m.ID, redisName(cfg), st.ID())
	case force && !empty:
		return 0, errors.New(redisName(cfg) + " holds data, and store init never deletes Redis data: " +
			"use another prefix (store.prefix), or delete the keys yourself " +
			"(redis-cli --scan --pattern 'PREFIX*' | xargs redis-cli unlink) and run store init again")
	case !empty:
		log.Info("joining a Redis store that holds data", "store", st.ID(), "at", redisName(cfg))
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, fmt.Errorf("creating data directory %s: %w", dir, err)
	}
	if err := writeMarker(dir, marker{ID: st.ID(), Created: time.Now()}); err != nil {
		return 0, err
	}
	return st.ID(), nil
}
