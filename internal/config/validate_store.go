package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// validateStore checks the store section: a known kind, and for Redis a
// server to reach and files that exist; for SQLite, no Redis settings
// that would silently be ignored.
func (c *Config) validateStore(add func(key, format string, args ...any)) {
	s := &c.Store
	if s.Kind != s.Backend {
		add("store.kind", "%q differs from store.backend %q (its older spelling); set only kind", s.Kind, s.Backend)
	}
	switch s.Kind {
	case StoreSQLite:
		if set := s.redisSettings(); len(set) > 0 {
			add("store", "%s only apply to kind redis, and kind is sqlite", strings.Join(set, ", "))
		}
	case StoreRedis:
		c.validateRedis(add)
	default:
		add("store.kind", "unknown kind %q (available: sqlite, redis)", s.Kind)
	}
}

// redisSettings names the Redis settings s sets.
func (s *Store) redisSettings() []string {
	var set []string
	for _, f := range []struct {
		key string
		on  bool
	}{
		{"url", s.URL != ""}, {"addresses", len(s.Addresses) > 0}, {"master_name", s.MasterName != ""},
		{"username", s.Username != ""}, {"password", s.Password != ""}, {"password_file", s.PasswordFile != ""},
		{"db", s.DB != 0}, {"prefix", s.Prefix != ""}, {"tls", s.TLS != (StoreTLS{})},
		{"dial_timeout", s.DialTimeout != 0}, {"timeout", s.Timeout != 0},
	} {
		if f.on {
			set = append(set, "store."+f.key)
		}
	}
	return set
}

func (c *Config) validateRedis(add func(key, format string, args ...any)) {
	s := &c.Store
	switch {
	case s.URL == "" && len(s.Addresses) == 0:
		add("store", "kind redis needs url or addresses")
	case s.URL != "" && len(s.Addresses) > 0:
		add("store.addresses", "set either url or addresses, not both")
	case s.URL != "":
		if _, err := goredis.ParseURL(s.URL); err != nil {
			add("store.url", "%s", strings.TrimPrefix(err.Error(), "redis: "))
		}
		if s.MasterName != "" {
			add("store.master_name", "needs addresses (the Sentinels), not url")
		}
	}
	for i, a := range s.Addresses {
		if msg := checkRedisAddr(a); msg != "" {
			add(fmt.Sprintf("store.addresses[%d]", i), "%s", msg)
		}
	}
	if s.Password != "" && s.PasswordFile != "" {
		add("store.password_file", "set either password or password_file, not both")
	}
	if s.PasswordFile != "" {
		if msg := checkSecretFile(s.PasswordFile); msg != "" {
			add("store.password_file", "%s", msg)
		}
	}
	if s.DB < 0 {
		add("store.db", "%d must not be negative", s.DB)
	}
	if s.DB != 0 && len(s.Addresses) > 1 && s.MasterName == "" {
		add("store.db", "a Redis Cluster has only database 0")
	}
	if strings.ContainsAny(s.Prefix, "{}") {
		add("store.prefix", "%q must not hold '{' or '}', which would change the cluster hash tag of every key", s.Prefix)
	}
	for _, d := range []named[Duration]{{"store.dial_timeout", s.DialTimeout}, {"store.timeout", s.Timeout}} {
		if d.val < 0 {
			add(d.key, "must not be negative")
		}
	}
	t := s.TLS
	if !t.Enabled && t != (StoreTLS{}) {
		add("store.tls.enabled", "tls settings are given but tls is not enabled")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		add("store.tls", "cert_file and key_file go together")
	}
	for _, f := range []named[string]{{"store.tls.ca_file", t.CAFile}, {"store.tls.cert_file", t.CertFile}, {"store.tls.key_file", t.KeyFile}} {
		if f.val == "" {
			continue
		}
		if _, err := os.Stat(f.val); err != nil {
			add(f.key, "%s", statError(err))
		}
	}
}

// checkRedisAddr reports what makes a not a host:port with a host.
func checkRedisAddr(a string) string {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return fmt.Sprintf("%q is not host:port", a)
	}
	return checkHostPort(a, host, port)
}

// checkSecretFile reports a password file that is missing or that
// anyone on the machine may read.
func checkSecretFile(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return statError(err)
	}
	if fi.IsDir() {
		return fmt.Sprintf("%s is a directory", path)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return fmt.Sprintf("%s is readable by everyone (mode %04o); chmod o-r it", path, fi.Mode().Perm())
	}
	return ""
}

// statError words a failed stat for a config error.
func statError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: %v", pe.Path, pe.Err)
	}
	return err.Error()
}
