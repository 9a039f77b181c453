package redis

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"mailwarden/internal/store"
	"mailwarden/internal/store/writefail"
)

// latchIDAlphabet and the length of an id are the SQLite store's: 32
// symbols without 0/O and 1/I, eight of them for 40 random bits.
const (
	latchIDAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
	latchIDLen      = 8
	latchTries      = 16
)

func newLatchID() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	v := uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4])
	var id [latchIDLen]byte
	for i := range id {
		id[i] = latchIDAlphabet[v&31]
		v >>= 5
	}
	return string(id[:])
}

// activeLua is true when the latch fields f (cleared at, expires) are
// active at now.
const activeLua = `
local function active(f, now)
  return f[1] == '0' and (f[2] == '0' or now < tonumber(f[2]))
end
`

// addLatchScript counts a violation against the active latch of a
// kind/key or makes a latch. KEYS: the active index, the latch list,
// the creation counter, the latch the index named when Go looked
// (ARGV[2], "" for none), the latch to make. ARGV: index field, that
// id, now, the new id, then kind, key, rule, reason, site, evidence and
// expires. It replies "retry" if the index moved since Go looked and
// "collision" if the new id is taken, and Go tries again.
var addLatchScript = goredis.NewScript(activeLua + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (cur or '') ~= ARGV[2] then return {'retry'} end
if cur and active(redis.call('HMGET', KEYS[4], 'cat', 'exp'), tonumber(ARGV[3])) then
  redis.call('HINCRBY', KEYS[4], 'count', 1)
  redis.call('HSET', KEYS[4], 'last', ARGV[3], 'rule', ARGV[7], 'reason', ARGV[8], 'evidence', ARGV[10])
  return {'ok', redis.call('HGETALL', KEYS[4])}
end
if redis.call('EXISTS', KEYS[5]) == 1 then return {'collision'} end
local n = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[5], 'id', ARGV[4], 'kind', ARGV[5], 'key', ARGV[6], 'rule', ARGV[7], 'reason', ARGV[8],
  'site', ARGV[9], 'evidence', ARGV[10], 'count', 1, 'refused', 0, 'first', ARGV[3], 'last', ARGV[3],
  'exp', ARGV[11], 'cat', 0, 'cby', '', 'cnote', '', 'n', n)
redis.call('ZADD', KEYS[2], n, ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
return {'ok', redis.call('HGETALL', KEYS[5])}
`)

// refusalScript counts a refused message against the latch KEYS[1] if
// it is active at ARGV[1].
var refusalScript = goredis.NewScript(activeLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
if not active(redis.call('HMGET', KEYS[1], 'cat', 'exp'), tonumber(ARGV[1])) then return {'notactive'} end
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HINCRBY', KEYS[1], 'refused', 1)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
return {'ok', redis.call('HGETALL', KEYS[1])}
`)

// clearScript ends the latch KEYS[6] if active at arg(1), by arg(2) with
// the note arg(3), drops it from the active index KEYS[7] and stores
// the audit.
var clearScript = goredis.NewScript(auditLua + activeLua + `
if redis.call('EXISTS', KEYS[6]) == 0 then return {'notfound'} end
if not active(redis.call('HMGET', KEYS[6], 'cat', 'exp'), tonumber(arg(1))) then return {'notactive'} end
redis.call('HSET', KEYS[6], 'cat', arg(1), 'cby', arg(2), 'cnote', arg(3))
local f = redis.call('HMGET', KEYS[6], 'kind', 'key', 'id')
local field = f[1] .. '\0' .. f[2]
if redis.call('HGET', KEYS[7], field) == f[3] then redis.call('HDEL', KEYS[7], field) end
audit()
return {'ok', redis.call('HGETALL', KEYS[6])}
`)

// activeField is a latch's field in the active index.
func activeField(kind, key string) string { return kind + "\x00" + key }

// latchFrom reads a latch hash.
func latchFrom(m map[string]string) store.Latch {
	n := func(k string) int { v, _ := strconv.Atoi(m[k]); return v }
	return store.Latch{
		ID: m["id"], Kind: m["kind"], Key: m["key"], Rule: m["rule"], Reason: m["reason"], Site: m["site"],
		Evidence: m["evidence"], Count: n("count"), Refused: n("refused"),
		FirstSeen: msField(m, "first"), LastSeen: msField(m, "last"), Expires: msField(m, "exp"),
		ClearedAt: msField(m, "cat"), ClearedBy: m["cby"], ClearNote: m["cnote"],
	}
}

// AddLatch counts a violation against kind/key's active latch, or makes
// one, in one script.
func (s *Store) AddLatch(ctx context.Context, l store.Latch, now time.Time) (_ store.Latch, err error) {
	defer s.countFailure(writefail.Latch, &err)
	if l.Kind == "" || l.Key == "" {
		return store.Latch{}, fmt.Errorf("redis: add latch: kind %q and key %q must both be set", l.Kind, l.Key)
	}
	if err := s.guard(ctx, "add latch"); err != nil {
		return store.Latch{}, err
	}
	field := activeField(l.Kind, l.Key)
	for range latchTries {
		cur, err := s.c.HGet(ctx, s.k.latchActive, field).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return store.Latch{}, errf("add latch", err)
		}
		id := newLatchID()
		old := s.k.latch(cmp.Or(cur, id))
		res, err := addLatchScript.Run(ctx, s.c,
			[]string{s.k.latchActive, s.k.latches, s.k.latchSeq, old, s.k.latch(id)},
			field, cur, now.UnixMilli(), id, l.Kind, l.Key, l.Rule, l.Reason, l.Site, l.Evidence, ms(l.Expires)).Slice()
		if err != nil {
			return store.Latch{}, errf("add latch", err)
		}
		if w, _ := res[0].(string); w == "ok" {
			return latchFrom(fields(res[1])), nil
		}
	}
	return store.Latch{}, errf("add latch", errors.New("the active latch kept changing or no free id was drawn"))
}

// AddLatchRefusal counts a message the active latch id refused.
func (s *Store) AddLatchRefusal(ctx context.Context, id string, now time.Time) (_ store.Latch, err error) {
	defer s.countFailure(writefail.Latch, &err)
	if err := s.guard(ctx, "count a refusal"); err != nil {
		return store.Latch{}, err
	}
	res, err := refusalScript.Run(ctx, s.c, []string{s.k.latch(id)}, now.UnixMilli()).Slice()
	if err == nil {
		err = refusal(res)
	}
	if err != nil {
		return store.Latch{}, errf("count a refusal by latch "+id, err)
	}
	return latchFrom(fields(res[1])), nil
}

// ActiveLatch returns the latch active at now for kind/key: the active
// index names the newest, whose fields say whether it still holds.
func (s *Store) ActiveLatch(ctx context.Context, kind, key string, now time.Time) (store.Latch, error) {
	if err := s.guard(ctx, "active latch"); err != nil {
		return store.Latch{}, err
	}
	// The identity is read in the same round trip: a Redis flushed
	// since the last probe must not answer "no latch" for a latched
	// client.
	pipe := s.c.Pipeline()
	active := pipe.HGet(ctx, s.k.latchActive, activeField(kind, key))
	ident := pipe.Get(ctx, s.k.id)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return store.Latch{}, errf("active latch", err)
	}
	if err := s.checkID(ident); err != nil {
		return store.Latch{}, errf("active latch", err)
	}
	id, err := active.Result()
	if errors.Is(err, goredis.Nil) {
		return store.Latch{}, store.ErrNotFound
	}
	if err != nil {
		return store.Latch{}, errf("active latch", err)
	}
	l, err := s.getLatch(ctx, id)
	if err != nil {
		return store.Latch{}, errf("active latch", err)
	}
	if !l.Active(now) {
		return store.Latch{}, store.ErrNotFound
	}
	return l, nil
}

func (s *Store) getLatch(ctx context.Context, id string) (store.Latch, error) {
	m, err := s.c.HGetAll(ctx, s.k.latch(id)).Result()
	if err != nil {
		return store.Latch{}, err
	}
	if len(m) == 0 {
		return store.Latch{}, store.ErrNotFound
	}
	return latchFrom(m), nil
}

// GetLatch returns the latch id, active or not.
func (s *Store) GetLatch(ctx context.Context, id string) (store.Latch, error) {
	if err := s.guard(ctx, "get latch"); err != nil {
		return store.Latch{}, err
	}
	l, err := s.getLatch(ctx, id)
	if err != nil {
		return store.Latch{}, errf("get latch "+id, err)
	}
	return l, nil
}

// ListLatches returns the latches matching f, newest LastSeen first; of
// latches seen at the same instant, the newer comes first. It reads
// every latch: there are few.
func (s *Store) ListLatches(ctx context.Context, f store.LatchFilter, now time.Time) ([]store.Latch, error) {
	if err := s.guard(ctx, "list latches"); err != nil {
		return nil, err
	}
	type numbered struct {
		l store.Latch
		n int
	}
	var out []numbered
	err := s.eachLatch(ctx, func(m map[string]string) {
		l := latchFrom(m)
		if f.Active && !l.Active(now) || f.Kind != "" && l.Kind != f.Kind || f.Key != "" && l.Key != f.Key {
			return
		}
		n, _ := strconv.Atoi(m["n"])
		out = append(out, numbered{l, n})
	})
	if err != nil {
		return nil, errf("list latches", err)
	}
	slices.SortFunc(out, func(a, b numbered) int {
		return cmp.Or(b.l.LastSeen.Compare(a.l.LastSeen), cmp.Compare(b.n, a.n))
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	ls := make([]store.Latch, len(out))
	for i, o := range out {
		ls[i] = o.l
	}
	return ls, nil
}

// eachLatch calls fn with the fields of every latch.
func (s *Store) eachLatch(ctx context.Context, fn func(map[string]string)) error {
	ids, err := s.c.ZRange(ctx, s.k.latches, 0, -1).Result()
	if err != nil {
		return err
	}
	for chunk := range slices.Chunk(ids, 500) {
		pipe := s.c.Pipeline()
		cmds := make([]*goredis.MapStringStringCmd, len(chunk))
		for i, id := range chunk {
			cmds[i] = pipe.HGetAll(ctx, s.k.latch(id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		for _, c := range cmds {
			if m := c.Val(); len(m) > 0 {
				fn(m)
			}
		}
	}
	return nil
}

// ClearLatch ends the active latch id with the audit ctx carries, in
// one script.
func (s *Store) ClearLatch(ctx context.Context, id, by, note string, now time.Time) (_ store.Latch, err error) {
	defer s.countFailure(writefail.Latch, &err)
	res, err := s.change(ctx, "clear latch "+id, clearScript, []string{s.k.latch(id), s.k.latchActive},
		now.UnixMilli(), by, note)
	if err != nil {
		return store.Latch{}, err
	}
	return latchFrom(fields(res[0])), nil
}

// ImportLatch stores l as given, replacing a latch with its ID. A latch
// not cleared becomes its kind/key's newest in the active index unless
// a newer one is there.
func (s *Store) ImportLatch(ctx context.Context, l store.Latch) error {
	if err := s.begin(ctx, "import latch"); err != nil {
		return err
	}
	err := importLatchScript.Run(ctx, s.c,
		[]string{s.k.latchActive, s.k.latches, s.k.latchSeq, s.k.latch(l.ID)},
		activeField(l.Kind, l.Key), l.ID, l.Kind, l.Key, l.Rule, l.Reason, l.Site, l.Evidence, l.Count, l.Refused,
		ms(l.FirstSeen), ms(l.LastSeen), ms(l.Expires), ms(l.ClearedAt), l.ClearedBy, l.ClearNote, s.k.tagged+"latch:").Err()
	if err != nil {
		return errf("import latch "+l.ID, err)
	}
	return nil
}

// importLatchScript stores a latch as given (see ImportLatch). The
// latch the index names now is read by its key, built from ARGV[17],
// in the same slot as the declared keys.
var importLatchScript = goredis.NewScript(`
local n = redis.call('HGET', KEYS[4], 'n')
if not n then n = redis.call('INCR', KEYS[3]) end
redis.call('HSET', KEYS[4], 'id', ARGV[2], 'kind', ARGV[3], 'key', ARGV[4], 'rule', ARGV[5], 'reason', ARGV[6],
  'site', ARGV[7], 'evidence', ARGV[8], 'count', ARGV[9], 'refused', ARGV[10], 'first', ARGV[11], 'last', ARGV[12],
  'exp', ARGV[13], 'cat', ARGV[14], 'cby', ARGV[15], 'cnote', ARGV[16], 'n', n)
redis.call('ZADD', KEYS[2], n, ARGV[2])
if ARGV[14] == '0' then
  local cur = redis.call('HGET', KEYS[1], ARGV[1])
  local curN = cur and redis.call('HGET', ARGV[17] .. cur, 'n')
  if not curN or tonumber(curN) <= tonumber(n) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
end
return 0
`)

// freezeField is a freeze's field in the freezes hash.
func freezeField(scope, value string) string { return scope + "\x00" + value }

var setFreezeScript = goredis.NewScript(auditLua + `
redis.call('HSET', KEYS[6], arg(1), arg(2))
audit()
return {'ok'}
`)

var liftFreezeScript = goredis.NewScript(auditLua + `
if redis.call('HDEL', KEYS[6], arg(1)) == 0 then return {'notfound'} end
audit()
return {'ok'}
`)

// SetFreeze adds or replaces a freeze with the audit ctx carries.
func (s *Store) SetFreeze(ctx context.Context, f store.Freeze) (err error) {
	defer s.countFailure(writefail.Freeze, &err)
	if f.Scope == "" {
		return errors.New("redis: set freeze: scope must be set")
	}
	b, err := json.Marshal(f)
	if err != nil {
		return errf("set freeze", err)
	}
	_, err = s.change(ctx, "set freeze", setFreezeScript, []string{s.k.freezes}, freezeField(f.Scope, f.Value), b)
	return err
}

// LiftFreeze removes a freeze with the audit ctx carries.
func (s *Store) LiftFreeze(ctx context.Context, scope, value string) (err error) {
	defer s.countFailure(writefail.Freeze, &err)
	_, err = s.change(ctx, fmt.Sprintf("lift freeze %s %q", scope, value), liftFreezeScript,
		[]string{s.k.freezes}, freezeField(scope, value))
	return err
}

// ListFreezes returns the freezes by scope, then value.
func (s *Store) ListFreezes(ctx context.Context) ([]store.Freeze, error) {
	if err := s.guard(ctx, "list freezes"); err != nil {
		return nil, err
	}
	// The identity in the same round trip, as ActiveLatch reads it.
	pipe := s.c.Pipeline()
	all := pipe.HGetAll(ctx, s.k.freezes)
	ident := pipe.Get(ctx, s.k.id)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, errf("list freezes", err)
	}
	if err := s.checkID(ident); err != nil {
		return nil, errf("list freezes", err)
	}
	m, err := all.Result()
	if err != nil {
		return nil, errf("list freezes", err)
	}
	out := make([]store.Freeze, 0, len(m))
	for k, v := range m {
		var f store.Freeze
		if err := json.Unmarshal([]byte(v), &f); err != nil {
			return nil, errf("list freezes", fmt.Errorf("freeze %q: %w", strings.ReplaceAll(k, "\x00", " "), err))
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b store.Freeze) int {
		return cmp.Or(cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Value, b.Value))
	})
	return out, nil
}

// rateScript is GCRA (ITU-T I.371 annex A, virtual scheduling) on the
// theoretical arrival time in KEYS[1], in microseconds, which a Lua
// number holds exactly: ARGV n, emission interval, period, now. The TAT
// expires when it no longer limits anything.
var rateScript = goredis.NewScript(`
local n, interval, period, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local nxt = tat + n * interval
local wait = nxt - period - now
if wait > 0 then return {0, string.format('%d', wait)} end
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PXAT', string.format('%d', math.ceil(nxt / 1000)))
return {1, '0'}
`)

// TakeRate applies GCRA as the SQLite store does: with emission interval
// T = period/limit, n units fit if the theoretical arrival time after
// them lies no more than period ahead of now.
func (s *Store) TakeRate(ctx context.Context, key string, n, limit int, period time.Duration, now time.Time) (_ bool, _ time.Duration, err error) {
	defer s.countFailure(writefail.Rate, &err)
	if n < 0 || limit < 1 || period <= 0 {
		return false, 0, fmt.Errorf("redis: take rate %s: invalid n %d, limit %d or period %v", key, n, limit, period)
	}
	if err := s.begin(ctx, "take rate"); err != nil {
		return false, 0, err
	}
	if n == 0 {
		return true, 0, nil
	}
	if n > limit {
		return false, period, nil
	}
	interval := max(period.Microseconds()/int64(limit), 1)
	res, err := rateScript.Run(ctx, s.c, []string{s.k.rate(key)}, n, interval, period.Microseconds(), now.UnixMicro()).Slice()
	if err != nil {
		return false, 0, errf("take rate", err)
	}
	ok, _ := res[0].(int64)
	ws, _ := res[1].(string)
	wait, _ := strconv.ParseInt(ws, 10, 64)
	return ok == 1, time.Duration(wait) * time.Microsecond, nil
}
