// Package redis is the store.Store that keeps mailwarden's state in Redis
// (single node, Sentinel or Cluster), so that several MX hosts share
// greylisting, latches, rate limits and the event log. It passes the
// same conformance suite (store/storetest) as the embedded SQLite store.
// It needs Redis 7.0 or newer (PEXPIRETIME, PEXPIREAT … GT).
//
// # Key layout
//
// Every key starts with Options.Prefix (default "mailwarden:"), so
// several deployments can share one server. Two kinds of keys follow:
//
// The small shared state that an admin change and its audit event touch
// together lives under the one hash tag {mw}, so it sits in one cluster
// slot and a Lua script may change several keys atomically:
//
//	PREFIX{mw}:id                identity (random int32, SETNX on first open)
//	PREFIX{mw}:probe             what Probe writes
//	PREFIX{mw}:latch:ID          hash: one latch (times in unix ms)
//	PREFIX{mw}:latches           zset: latch IDs by creation number
//	PREFIX{mw}:latch:active      hash: "kind\x00key" -> ID of its newest latch
//	PREFIX{mw}:latch:seq         counter: latch creation numbers
//	PREFIX{mw}:freezes           hash: "scope\x00value" -> JSON freeze
//	PREFIX{mw}:ev:seq            counter: event IDs
//	PREFIX{mw}:ev                hash: zero-padded ID -> JSON event
//	PREFIX{mw}:ev:time           zset: IDs by event time (ms)
//	PREFIX{mw}:ev:id             zset: IDs by ID, for readers tailing the log
//	PREFIX{mw}:ev:exp            zset: IDs by retention end (ms; +inf: kept)
//	PREFIX{mw}:al:seq, :al, :al:ids, :al:pending, :al:exp, :al:cursor
//	                             the alert outbox, laid out as the events
//	PREFIX{mw}:user:NAME         hash: one dashboard user; PREFIX{mw}:users the set of names
//	PREFIX{mw}:trap, :ports, :logins   hashes of JSON host evidence by client
//	PREFIX{mw}:notes, :disinf    lists of JSON host notes and disinfections
//
// The high-volume keys have no common tag, so a cluster spreads them by
// their own key; each carries a TTL, so nothing sweeps them:
//
//	PREFIXt:{B}            hash: greylist bucket B, triplet field -> compact binary value
//	PREFIXp:CLIENT         a client's greylist pass count
//	PREFIXr:KEY            GCRA theoretical arrival time (µs)
//
// A key costs Redis about 130 bytes before its text, so triplets do not
// get one each: they are spread over Buckets (131,072) hashes by a fixed
// hash of their field, the same on every host; B, in a hash tag, spreads
// the buckets over a Cluster's slots. Ten million triplets make about 76
// a bucket, which Redis keeps as a listpack, a few bytes per field, as
// long as hash-max-listpack-entries stays at its default 128 or above
// and hash-max-listpack-value is raised to ListpackValue (512): a field
// is longer than the default 64. Open warns when they are not so.
//
// A field is the triplet length-prefixed (12:192.0.2.0/2413:a@example.orgb@example.net),
// so no choice of separator can make two triplets collide; its value
// starts with the triplet's expiry (unix ms, six bytes big-endian),
// which the bucket's Lua scripts read. A bucket's TTL is the latest
// expiry of its fields, so an idle bucket goes by itself; an expired
// field in a busy one reads as absent, and goes when a write adds a
// field to a bucket of more than sweepAbove (96) fields, which sweeps it.
//
// ListTriplets, GreylistStats and ListClientPasses SCAN every key of
// their kind (on a Cluster, on every master) and read each bucket whole:
// they are O(n) admin reads, never on the path of a message.
//
// # Data loss
//
// A Redis that restarts without persistence, or a FLUSHALL, would
// silently forget every latch and freeze. The identity key guards
// against that: Ping and Probe (the daemon's store health monitor asks
// every few seconds) compare it with the identity read at Open, and
// while it is missing or another, they and every read of latches and
// freezes fail, so those checks tempfail rather than let an infected
// machine through.
package redis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"mailwarden/internal/logx"
	"mailwarden/internal/store"
	"mailwarden/internal/store/writefail"
)

// DefaultPrefix starts every key unless Options.Prefix says otherwise.
const DefaultPrefix = "mailwarden:"

// ErrLost is wrapped by the errors of a store whose Redis lost its data
// while it was open (a restart without persistence, a FLUSHALL).
var ErrLost = errors.New("redis: lost mailwarden's data")

// ErrClosed is returned by every call on a closed Store.
var ErrClosed = errors.New("redis: store is closed")

// TLS says how to reach Redis over TLS.
type TLS struct {
	Enabled    bool
	CAFile     string // PEM CA bundle; "" uses the system roots
	CertFile   string // client certificate, with KeyFile
	KeyFile    string
	ServerName string // "" uses the host of the address
}

// Options says which Redis to use and how. Either URL (redis:// or
// rediss://, with user, password and database) or Addrs is set: one
// address is a single node, several a Cluster, and with MasterName they
// are Sentinels. Username, Password, DB and TLS given here override the
// URL's.
type Options struct {
	URL        string
	Addrs      []string
	MasterName string
	Username   string
	Password   string
	DB         int
	TLS        TLS
	// Prefix starts every key; "" means DefaultPrefix. It may not hold
	// '{' or '}', which would change the cluster hash tag of the keys.
	Prefix      string
	DialTimeout time.Duration // 0: 2s
	Timeout     time.Duration // read and write timeout; 0: 2s
	Log         *slog.Logger
	// buckets replaces Buckets, so that a test fills buckets as ten
	// million triplets fill them with a few thousand.
	buckets uint64
}

// Store is the Redis store. It is safe for concurrent use.
type Store struct {
	c       goredis.UniversalClient
	k       keys
	buckets uint64
	log     *slog.Logger
	id      int32
	made    bool
	lost    atomic.Pointer[error] // set by Ping or Probe while the identity is gone
	closed  atomic.Bool
	// fails counts the writes that failed, by kind: the daemon's store
	// health monitor probes at once when the count grows, so an outage
	// shorter than its probe interval is still seen, and reports them
	// as lost writes.
	fails *writefail.Counter
	// warnings is what CheckServer last found wrong with the server's
	// settings (ServerWarnings), under warnMu.
	warnMu   sync.Mutex
	warnings []string
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Importer = (*Store)(nil)
)

// Open connects to Redis, checks that it answers and reads the store's
// identity, making one if this prefix has none yet.
func Open(ctx context.Context, o Options) (*Store, error) {
	c, err := newClient(o)
	if err != nil {
		return nil, err
	}
	prefix := o.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := &Store{c: c, k: newKeys(prefix), log: logx.Or(o.Log), buckets: Buckets}
	if o.buckets > 0 {
		s.buckets = o.buckets
	}
	s.fails = writefail.New(s.log, writefail.SummaryEvery)
	goredis.SetLogger(clientLog{s.log})
	if err := s.identify(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis: opening %s: %w", where(o), err)
	}
	s.CheckServer(ctx)
	return s, nil
}

// Buckets is the number of hashes the greylist triplets are spread
// over. Every host sharing a Redis must use the same number, so it is
// fixed: ten million triplets make about 76 a bucket, below Redis's
// default hash-max-listpack-entries (128), so that buckets keep the
// compact listpack encoding.
const Buckets = 1 << 17

// ListpackValue is the hash-max-listpack-value a server needs for its
// buckets to stay listpacks: a triplet's field holds its client, sender
// and recipient, often longer than the default 64 bytes, and one field
// longer than the setting turns its whole bucket into a hash table,
// which takes about half as much memory again.
const ListpackValue = 512

// serverFinding is one thing wrong with the server's settings; severe
// ones may let mail through that should be stopped.
type serverFinding struct {
	text   string
	severe bool
}

// serverFindings reads the settings that cost memory or state: hash
// settings that would turn greylist buckets into hash tables, and an
// eviction policy that lets a full server drop keys. Eviction under
// allkeys-* can drop a latch or a freeze, letting an infected or frozen
// machine's mail through; under volatile-* it drops greylist buckets,
// pass counts and rate state, which only delays or loosens. ok is false
// when the settings cannot be read (a user whose ACL refuses CONFIG
// GET, a server that is down).
func (s *Store) serverFindings(ctx context.Context) (found []serverFinding, ok bool) {
	cfg, err := s.c.ConfigGet(ctx, "hash-max-listpack-*").Result()
	if err != nil {
		s.log.Debug("redis: cannot read the hash listpack settings", "err", err)
		return nil, false
	}
	mem, err := s.c.ConfigGet(ctx, "maxmemory*").Result()
	if err != nil {
		s.log.Debug("redis: cannot read the maxmemory settings", "err", err)
		return nil, false
	}
	value, _ := strconv.Atoi(cfg["hash-max-listpack-value"])
	entries, _ := strconv.Atoi(cfg["hash-max-listpack-entries"])
	if value < ListpackValue || entries < 128 {
		found = append(found, serverFinding{text: fmt.Sprintf("greylist buckets will not stay compact (hash-max-listpack-value %d, hash-max-listpack-entries %d): "+
			"set hash-max-listpack-value 512 and hash-max-listpack-entries 128 or more (docs/redis.md)", value, entries)})
	}
	policy := mem["maxmemory-policy"]
	if mem["maxmemory"] == "0" || mem["maxmemory"] == "" || policy == "noeviction" {
		return found, true
	}
	at := fmt.Sprintf("maxmemory-policy %s with maxmemory %s: ", policy, mem["maxmemory"])
	if strings.HasPrefix(policy, "allkeys-") {
		return append(found, serverFinding{severe: true, text: at + "a full server may evict latches and freezes, letting their mail through; " +
			"set maxmemory-policy noeviction (docs/redis.md)"}), true
	}
	return append(found, serverFinding{text: at + "a full server may evict greylist and rate state; maxmemory-policy noeviction keeps it (docs/redis.md)"}), true
}

// CheckServer reads the server's settings and keeps what is wrong with
// them for ServerWarnings; Open calls it, and the daemon again every
// minute, so a setting changed with CONFIG SET shows without a restart. Each finding is logged when it first shows
// (an error when severe), and its end is logged too, so that an
// administrator who fixes a setting with CONFIG SET sees it taken. It
// returns the severe findings new since the last check. When the
// settings cannot be read, what was found before stands.
func (s *Store) CheckServer(ctx context.Context) (severe []string) {
	found, ok := s.serverFindings(ctx)
	if !ok {
		return nil
	}
	texts := make([]string, len(found))
	for i, f := range found {
		texts[i] = f.text
	}
	s.warnMu.Lock()
	old := s.warnings
	s.warnings = texts
	s.warnMu.Unlock()
	for _, f := range found {
		if slices.Contains(old, f.text) {
			continue
		}
		level := slog.LevelWarn
		if f.severe {
			level = slog.LevelError
			severe = append(severe, f.text)
		}
		s.log.Log(ctx, level, "redis: "+f.text)
	}
	for _, t := range old {
		if !slices.Contains(texts, t) {
			s.log.Info("redis: server setting fixed, no longer: " + t)
		}
	}
	return severe
}

// ServerWarnings returns what was wrong with the server's settings at
// the last look: hash settings that cost memory, an eviction policy
// that may drop state. `mailwarden status` shows them, so they are not
// only in the log. Empty when nothing was, or the user's ACL refuses
// CONFIG GET.
func (s *Store) ServerWarnings() []string {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	return slices.Clone(s.warnings)
}

// clientLog hands go-redis's own messages (a failed dial, a bad pool
// connection) to the store's log, in the daemon's format, instead of
// Go's default logger on stderr. go-redis has one logger per process:
// the last store opened sets it.
type clientLog struct{ log *slog.Logger }

func (l clientLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// where names the server of o for an error message, without a password.
func where(o Options) string {
	if o.URL != "" {
		if u, err := goredis.ParseURL(o.URL); err == nil {
			return u.Addr
		}
		return "the configured URL"
	}
	return strings.Join(o.Addrs, ",")
}

// CheckPrefix reports what makes p unfit as a key prefix.
func CheckPrefix(p string) error {
	if strings.ContainsAny(p, "{}") {
		return fmt.Errorf("prefix %q holds '{' or '}', which would change the cluster hash tag of every key", p)
	}
	return nil
}

func newClient(o Options) (goredis.UniversalClient, error) {
	if err := CheckPrefix(o.Prefix); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	if (o.URL == "") == (len(o.Addrs) == 0) {
		return nil, errors.New("redis: set either a URL or addresses")
	}
	tlsCfg, err := tlsConfig(o.TLS)
	if err != nil {
		return nil, err
	}
	dial, timeout := o.DialTimeout, o.Timeout
	if dial <= 0 {
		dial = 2 * time.Second
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if o.URL != "" {
		u, err := goredis.ParseURL(o.URL)
		if err != nil {
			return nil, fmt.Errorf("redis: url: %w", err)
		}
		if o.Username != "" {
			u.Username = o.Username
		}
		if o.Password != "" {
			u.Password = o.Password
		}
		if o.DB != 0 {
			u.DB = o.DB
		}
		if tlsCfg != nil {
			if u.TLSConfig != nil && tlsCfg.ServerName == "" {
				tlsCfg.ServerName = u.TLSConfig.ServerName
			}
			u.TLSConfig = tlsCfg
		}
		u.DialTimeout, u.ReadTimeout, u.WriteTimeout = dial, timeout, timeout
		u.Protocol = 2
		u.MaxRetries = 1
		return goredis.NewClient(u), nil
	}
	return goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs: o.Addrs, MasterName: o.MasterName, Username: o.Username, Password: o.Password,
		DB: o.DB, TLSConfig: tlsCfg, DialTimeout: dial, ReadTimeout: timeout, WriteTimeout: timeout,
		Protocol: 2, MaxRetries: 1,
	}), nil
}

// tlsConfig builds the TLS settings t asks for, or nil.
func tlsConfig(t TLS) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis: tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis: tls ca_file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis: tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// identify reads the identity key, making it if the prefix has none.
func (s *Store) identify(ctx context.Context) error {
	made, err := s.c.SetNX(ctx, s.k.id, strconv.Itoa(int(newID())), 0).Result()
	if err != nil {
		return err
	}
	v, err := s.c.Get(ctx, s.k.id).Result()
	if err != nil {
		return fmt.Errorf("reading the identity key: %w", err)
	}
	id, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return fmt.Errorf("identity key %s holds %q, not a mailwarden identity", s.k.id, v)
	}
	s.id, s.made = int32(id), made
	return nil
}

// newID returns a random non-zero identity.
func newID() int32 {
	var b [4]byte
	for {
		rand.Read(b[:])
		if id := int32(binary.BigEndian.Uint32(b[:]) & 0x7fffffff); id != 0 {
			return id
		}
	}
}

// ID returns the store's identity, read or made at Open.
func (s *Store) ID() int32 { return s.id }

// Made reports whether Open made the identity: the prefix was empty.
func (s *Store) Made() bool { return s.made }

// Empty reports whether the prefix holds nothing but the identity and
// the probe key, as `store init` and `store copy` want of a target.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	found := false
	err := s.scan(ctx, s.k.pattern(""), func(keys []string) error {
		for _, k := range keys {
			if k != s.k.id && k != s.k.probe {
				found = true
			}
		}
		return nil
	})
	return !found, err
}

// begin refuses work on a closed store or a done context.
func (s *Store) begin(ctx context.Context, op string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return errf(op, err)
	}
	return nil
}

// guard is begin for the reads a lost store must refuse: latches and
// freezes, whose absence would let mail through.
func (s *Store) guard(ctx context.Context, op string) error {
	if err := s.begin(ctx, op); err != nil {
		return err
	}
	if p := s.lost.Load(); p != nil {
		return errf(op, *p)
	}
	return nil
}

// errf wraps err with the operation, as the other backends do.
func errf(op string, err error) error { return fmt.Errorf("redis: %s: %w", op, err) }

// Close closes the connections; a second call does nothing.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.fails.Stop()
	return s.c.Close()
}

// countFailure counts *err as a failed write of kind, unless it is an
// answer rather than a failure (not found, not active, exists) or the
// store is closed.
func (s *Store) countFailure(kind string, err *error) {
	if e := *err; e != nil && !errors.Is(e, store.ErrNotFound) && !errors.Is(e, store.ErrNotActive) &&
		!errors.Is(e, store.ErrExists) && !errors.Is(e, ErrClosed) {
		s.fails.Add(kind, e)
	}
}

// WriteFailures returns how many writes have failed since Open, by kind
// (the daemon's lost-write counts and mailwarden_store_write_failures_total).
func (s *Store) WriteFailures() map[string]uint64 { return s.fails.Counts() }

// Ping reports whether Redis answers and still holds this store's data.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.begin(ctx, "ping"); err != nil {
		return err
	}
	pipe := s.c.Pipeline()
	pipe.Ping(ctx)
	get := pipe.Get(ctx, s.k.id)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return errf("ping", err)
	}
	return s.checkID(get)
}

// Probe writes a small key through the ordinary write path and checks
// the identity as Ping does.
func (s *Store) Probe(ctx context.Context) error {
	if err := s.begin(ctx, "probe"); err != nil {
		return err
	}
	pipe := s.c.TxPipeline()
	pipe.Set(ctx, s.k.probe, time.Now().UnixMilli(), 0)
	get := pipe.Get(ctx, s.k.id)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return errf("probe", err)
	}
	return s.checkID(get)
}

// checkID compares the identity Redis holds with the one read at Open
// and sets or clears the lost flag that guard checks.
func (s *Store) checkID(get *goredis.StringCmd) error {
	v, err := get.Result()
	var lost error
	switch {
	case errors.Is(err, goredis.Nil):
		lost = fmt.Errorf("%w: identity key %s missing (was %d): Redis restarted without persistence or was flushed; "+
			"latches and freezes read as errors until it is restored (restore the RDB or AOF; or start over with no latches, freezes or users: stop the daemon, run `mailwarden store init --force`, start it)",
			ErrLost, s.k.id, s.id)
	case err != nil:
		return errf("reading the identity", err)
	case v != strconv.Itoa(int(s.id)):
		lost = fmt.Errorf("%w: identity key %s is %s, was %d: another store took its place", ErrLost, s.k.id, v, s.id)
	}
	if lost == nil {
		if s.lost.Swap(nil) != nil {
			s.log.Warn("redis holds mailwarden's data again", "store", s.id)
		}
		return nil
	}
	if s.lost.Swap(&lost) == nil {
		s.log.Error("redis lost mailwarden's data", "err", lost)
	}
	return lost
}

// Expire deletes what is past its expiry at now and returns how many
// records went. Triplets, pass counts and rate state carry Redis TTLs
// and vanish by themselves; they are only looked for when now lies
// ahead of the real clock (a test, or a clock that runs ahead of Redis's),
// when their TTL has not run out although their expiry has passed.
// Events and alerts are trimmed by their expiry index.
func (s *Store) Expire(ctx context.Context, now time.Time) (_ int, err error) {
	defer s.countFailure(writefail.Expire, &err)
	if err := s.begin(ctx, "expire"); err != nil {
		return 0, err
	}
	n := 0
	if now.After(time.Now().Add(time.Second)) {
		m, err := s.sweepBuckets(ctx, now)
		if err == nil {
			n += m
			m, err = s.expirePasses(ctx, now)
		}
		if err != nil {
			return n, errf("expire", err)
		}
		n += m
	}
	for _, idx := range [][4]string{
		{s.k.evExp, s.k.ev, s.k.evTime, s.k.evID},
		{s.k.alExp, s.k.al, s.k.alIDs, s.k.alPending},
	} {
		for {
			m, err := trimScript.Run(ctx, s.c, idx[:], now.UnixMilli(), trimBatch).Int()
			if err != nil {
				return n, errf("expire", err)
			}
			n += m
			if m < trimBatch {
				break
			}
		}
	}
	return n, nil
}

// trimBatch bounds what one trim script deletes, so that a backlog of
// expired events does not block Redis for long.
const trimBatch = 5000

// trimScript deletes up to ARGV[2] members of the expiry index KEYS[1]
// scored at or before ARGV[1] from the hash KEYS[2] and the indexes
// KEYS[3..].
var trimScript = goredis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #ids == 0 then return 0 end
redis.call('HDEL', KEYS[2], unpack(ids))
for i = 1, #KEYS do
  if i ~= 2 then redis.call('ZREM', KEYS[i], unpack(ids)) end
end
return #ids
`)

// sweepBuckets deletes the triplets whose expiry is at or before now
// from every bucket.
func (s *Store) sweepBuckets(ctx context.Context, now time.Time) (int, error) {
	if err := sweepScript.Load(ctx, s.c).Err(); err != nil {
		return 0, err
	}
	n := 0
	err := s.scan(ctx, s.k.pattern("t:"), func(keys []string) error {
		pipe := s.c.Pipeline()
		var cmds []*goredis.Cmd
		for _, k := range keys {
			if s.k.isBucket(k) {
				cmds = append(cmds, sweepScript.EvalSha(ctx, pipe, []string{k}, now.UnixMilli()))
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		for _, c := range cmds {
			m, _ := c.Int()
			n += m
		}
		return nil
	})
	return n, err
}

// expirePasses deletes the pass records whose expiry is at or before
// now.
func (s *Store) expirePasses(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.scan(ctx, s.k.pattern("p:"), func(keys []string) error {
		exps, err := s.expiries(ctx, keys)
		if err != nil {
			return err
		}
		var gone []string
		for i, e := range exps {
			if e > 0 && e <= now.UnixMilli() {
				gone = append(gone, keys[i])
			}
		}
		if len(gone) == 0 {
			return nil
		}
		pipe := s.c.Pipeline()
		dels := make([]*goredis.IntCmd, len(gone))
		for i, k := range gone {
			dels[i] = pipe.Del(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		for _, d := range dels {
			n += int(d.Val())
		}
		return nil
	})
	return n, err
}

// expiries returns the expiry (unix ms; -1 none, -2 missing) of keys.
func (s *Store) expiries(ctx context.Context, keys []string) ([]int64, error) {
	pipe := s.c.Pipeline()
	cmds := make([]*goredis.Cmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Do(ctx, "PEXPIRETIME", k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	out := make([]int64, len(keys))
	for i, c := range cmds {
		out[i], _ = c.Int64()
	}
	return out, nil
}

// scan calls fn with every batch of keys matching pattern, on every
// master of a Cluster. The masters are scanned at once, but fn is
// called for one batch at a time, so callers may gather into plain
// variables.
func (s *Store) scan(ctx context.Context, pattern string, fn func(keys []string) error) error {
	var mu sync.Mutex
	one := func(ctx context.Context, c goredis.UniversalClient) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				mu.Lock()
				err := fn(keys)
				mu.Unlock()
				if err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := s.c.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return one(ctx, c) })
	}
	return one(ctx, s.c)
}

// keys names the store's keys under one prefix.
type keys struct {
	prefix, tagged                               string
	id, probe                                    string
	latches, latchActive, latchSeq               string
	freezes                                      string
	evSeq, ev, evTime, evID, evExp               string
	alSeq, al, alIDs, alPending, alExp, alCursor string
	users, trap, ports, logins, notes, disinf    string
}

func newKeys(prefix string) keys {
	t := prefix + "{mw}:"
	return keys{
		prefix: prefix, tagged: t,
		id: t + "id", probe: t + "probe",
		latches: t + "latches", latchActive: t + "latch:active", latchSeq: t + "latch:seq",
		freezes: t + "freezes",
		evSeq:   t + "ev:seq", ev: t + "ev", evTime: t + "ev:time", evID: t + "ev:id", evExp: t + "ev:exp",
		alSeq: t + "al:seq", al: t + "al", alIDs: t + "al:ids", alPending: t + "al:pending", alExp: t + "al:exp",
		alCursor: t + "al:cursor",
		users:    t + "users", trap: t + "trap", ports: t + "ports", logins: t + "logins",
		notes: t + "notes", disinf: t + "disinf",
	}
}

func (k keys) latch(id string) string    { return k.tagged + "latch:" + id }
func (k keys) user(name string) string   { return k.tagged + "user:" + name }
func (k keys) pass(client string) string { return k.prefix + "p:" + client }
func (k keys) rate(key string) string    { return k.prefix + "r:" + key }

// bucket names triplet bucket n.
func (k keys) bucket(n uint64) string { return k.prefix + "t:{" + strconv.FormatUint(n, 10) + "}" }

// isBucket reports whether key names a triplet bucket. It leaves out
// the per-triplet string keys of an unreleased earlier layout, which
// go with their TTLs.
func (k keys) isBucket(key string) bool {
	n, ok := strings.CutPrefix(key, k.prefix+"t:{")
	if !ok {
		return false
	}
	if n, ok = strings.CutSuffix(n, "}"); !ok {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 64)
	return err == nil
}

// bucket names the bucket that holds the triplet field f: a fixed hash
// of f, the same on every host, modulo the number of buckets.
func (s *Store) bucket(f string) string { return s.k.bucket(hash64(f) % s.buckets) }

// hash64 is FNV-1a of s with a final mix (MurmurHash3's fmix64): FNV's
// low bits depend only on the low bits of each step, so without the mix
// a bucket number taken modulo a power of two would be poorly spread.
func hash64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// tripletField spells a triplet's field in its bucket with length
// prefixes, so that no sender or client can make two triplets share one.
func tripletField(client, sender, recipient string) string {
	var b strings.Builder
	b.Grow(10 + len(client) + len(sender) + len(recipient))
	b.WriteString(strconv.Itoa(len(client)))
	b.WriteByte(':')
	b.WriteString(client)
	b.WriteString(strconv.Itoa(len(sender)))
	b.WriteByte(':')
	b.WriteString(sender)
	b.WriteString(recipient)
	return b.String()
}

// parseTripletField is the inverse of tripletField.
func parseTripletField(rest string) (client, sender, recipient string, ok bool) {
	take := func() (string, bool) {
		n, tail, ok := strings.Cut(rest, ":")
		l, err := strconv.Atoi(n)
		if !ok || err != nil || l < 0 || l > len(tail) {
			return "", false
		}
		rest = tail[l:]
		return tail[:l], true
	}
	if client, ok = take(); !ok {
		return
	}
	if sender, ok = take(); !ok {
		return
	}
	return client, sender, rest, true
}

// pattern is the SCAN pattern of the keys starting with the prefix and
// then kind.
func (k keys) pattern(kind string) string { return globEscape(k.prefix+kind) + "*" }

// globEscape quotes the characters that SCAN MATCH treats as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ms is t in unix milliseconds, 0 for the zero time.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS is the inverse of ms.
func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}
