package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/store"
	"mailwarden/internal/store/backend"
	"mailwarden/internal/store/redis"
	"mailwarden/internal/store/sqlite"
)

// backend is a store under measurement and how to weigh it.
type target interface {
	store() store.Store
	// used returns the bytes the stored entries take, and a detail
	// for the column usedName names second.
	used(ctx context.Context) (int64, string, error)
	usedName() (string, string)
	describe() string
	// note is printed under the table, or "".
	note() string
	close()
}

// defaultRedisConfig is the store section for -backend redis.
const defaultRedisConfig = `store:
  kind: redis
  url: redis://%s/0
  prefix: greyscale
`

func openBackend(ctx context.Context, o options, dir string) (target, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.backend == "sqlite" {
		cfg := config.Default()
		cfg.DataDir = filepath.Join(dir, "data")
		st, err := backend.Open(cfg, backend.Options{Daemon: true, Create: true, Log: log})
		if err != nil {
			return nil, err
		}
		return &sqliteBackend{st: st, dir: cfg.DataDir}, nil
	}
	srv, err := startRedis(ctx, o.redisServer, filepath.Join(dir, "redis"))
	if err != nil {
		return nil, err
	}
	base, err := srv.usedMemory()
	if err != nil {
		srv.stop()
		return nil, err
	}
	cfg, err := config.Parse("-redis-config", []byte(strings.ReplaceAll(o.redisConfig, "%s", srv.addr)))
	if err != nil {
		srv.stop()
		return nil, err
	}
	cfg.DataDir = filepath.Join(dir, "data")
	st, err := backend.Open(cfg, backend.Options{Daemon: true, Create: true, Log: log})
	if err != nil {
		srv.stop()
		return nil, err
	}
	return &redisBackend{st: st, srv: srv, base: base}, nil
}

type sqliteBackend struct {
	st  store.Store
	dir string
}

func (b *sqliteBackend) store() store.Store         { return b.st }
func (b *sqliteBackend) usedName() (string, string) { return "db+wal", "of which wal" }
func (b *sqliteBackend) describe() string           { return "dir=" + b.dir }
func (b *sqliteBackend) close()                     { b.st.Close() }
func (b *sqliteBackend) note() string {
	return "sqlite: the daemon also keeps every triplet in memory (go heap); Expire deletes expired rows in chunks and sweeps that copy"
}

func (b *sqliteBackend) used(context.Context) (int64, string, error) {
	var sum, wal int64
	for _, name := range []string{sqlite.FileName, sqlite.FileName + "-wal"} {
		fi, err := os.Stat(filepath.Join(b.dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, "", err
		}
		sum += fi.Size()
		if strings.HasSuffix(name, "-wal") {
			wal = fi.Size()
		}
	}
	return sum, mib(wal), nil
}

type redisBackend struct {
	st   store.Store
	srv  *redisServer
	base int64 // used_memory of the empty server
}

func (b *redisBackend) store() store.Store         { return b.st }
func (b *redisBackend) usedName() (string, string) { return "redis mem", "keys" }
func (b *redisBackend) describe() string           { return "redis=" + b.srv.addr }
func (b *redisBackend) close() {
	b.st.Close()
	b.srv.stop()
}

func (b *redisBackend) used(context.Context) (int64, string, error) {
	n, err := b.srv.usedMemory()
	if err != nil {
		return 0, "", err
	}
	keys, err := b.srv.do("DBSIZE")
	return n - b.base, keys, err
}

// note says what does Redis's expiry: a sample key's remaining TTL, and
// how a bucket of triplets is encoded.
func (b *redisBackend) note() string {
	key, err := b.srv.do("RANDOMKEY")
	if err != nil || key == "" {
		return fmt.Sprintf("redis: no sample key (%v)", err)
	}
	ttl, err := b.srv.do("PTTL", key)
	if err != nil {
		return fmt.Sprintf("redis: PTTL %s: %v", key, err)
	}
	ms, _ := strconv.ParseInt(ttl, 10, 64)
	what := "no TTL"
	if ms >= 0 {
		what = "TTL " + (time.Duration(ms) * time.Millisecond).Round(time.Second).String()
	}
	enc, _ := b.srv.do("OBJECT", "ENCODING", key)
	fields, _ := b.srv.do("HLEN", key)
	return fmt.Sprintf("redis: sample key %q has %s, encoding %s, %s fields; Redis drops idle buckets itself and writes sweep "+
		"full ones, so the daemon's Expire(now) only trims the event log; \"expired\" is Expire at a future instant, "+
		"which SCANs and sweeps every triplet bucket (a path the daemon never takes)", key, what, enc, fields)
}

// redisServer is a redis-server started for the run, on loopback only.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	conn net.Conn
	r    *bufio.Reader
}

// reserved are ports that other work on this machine uses.
var reserved = map[int]bool{16379: true, 13310: true, 17357: true, 11332: true, 10123: true, 17400: true}

func freePort() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !reserved[p] {
			return p, nil
		}
	}
	return 0, errors.New("no free port")
}

func startRedis(ctx context.Context, prog, dir string) (*redisServer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// appendonly and the hash setting docs/redis.md asks for, as a
	// deployment would run it; no RDB snapshots, whose fork would land
	// in the middle of the measurements.
	cmd := exec.Command(prog, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"),
		"--hash-max-listpack-value", strconv.Itoa(redis.ListpackValue))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", prog, err)
	}
	s := &redisServer{addr: addr, cmd: cmd}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			s.conn, s.r = c, bufio.NewReader(c)
			if _, err = s.do("PING"); err == nil {
				return s, nil
			}
			c.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *redisServer) stop() {
	if s.conn != nil {
		s.conn.Close()
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

func (s *redisServer) usedMemory() (int64, error) {
	info, err := s.do("INFO", "memory")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
}

// do sends one command and returns a simple, integer or bulk reply as
// text (RESP2; "" for a nil bulk).
func (s *redisServer) do(args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	s.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(s.conn, b.String()); err != nil {
		return "", err
	}
	line, err := s.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(s.r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}
