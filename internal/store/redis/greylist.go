package redis

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"mailwarden/internal/store"
	"mailwarden/internal/store/writefail"
)

// encodeTriplet packs what a triplet's field does not hold: its expiry
// in unix ms as six big-endian bytes first, where the bucket scripts
// read it without decoding varints, then varints for attempts and
// whether it passed, and the other times as differences from the
// expiry, which are small. A typical value is 13 to 16 bytes.
func encodeTriplet(t store.Triplet) []byte {
	b := make([]byte, 6, 24)
	flag := uint64(0)
	if t.Passed() {
		flag = 1
	}
	exp, first := ms(t.Expires), ms(t.FirstSeen)
	putExpiry(b, exp)
	b = binary.AppendUvarint(b, uint64(t.Attempts)<<1|flag)
	b = binary.AppendVarint(b, exp-first)
	b = binary.AppendVarint(b, ms(t.LastSeen)-first)
	if t.Passed() {
		b = binary.AppendVarint(b, ms(t.PassedAt)-first)
	}
	return b
}

// putExpiry writes exp (unix ms) into b[:6]. Six bytes reach the year
// 10889; an expiry before 1970 is stored as 1 ms after it, which is as
// expired, since 0 means none.
func putExpiry(b []byte, exp int64) {
	if exp < 0 {
		exp = 1
	}
	var w [8]byte
	binary.BigEndian.PutUint64(w[:], uint64(exp))
	copy(b, w[2:])
}

// expiryOf reads what putExpiry wrote; b holds at least six bytes.
func expiryOf(b []byte) int64 {
	var w [8]byte
	copy(w[2:], b[:6])
	return int64(binary.BigEndian.Uint64(w[:]))
}

// decodeTriplet unpacks a value encodeTriplet made into t's times and
// attempts.
func decodeTriplet(b []byte, t *store.Triplet) error {
	if len(b) < 6 {
		return errors.New("bad triplet value")
	}
	exp := expiryOf(b)
	b = b[6:]
	var vals [3]int64
	af, n := binary.Uvarint(b)
	if n <= 0 {
		return errors.New("bad triplet value")
	}
	b = b[n:]
	count := 2
	if af&1 == 1 {
		count = 3
	}
	for i := range count {
		v, n := binary.Varint(b)
		if n <= 0 {
			return errors.New("bad triplet value")
		}
		vals[i], b = v, b[n:]
	}
	first := exp - vals[0]
	t.Attempts = int(af >> 1)
	t.Expires, t.FirstSeen, t.LastSeen = fromMS(exp), fromMS(first), fromMS(first+vals[1])
	t.PassedAt = time.Time{}
	if count == 3 {
		t.PassedAt = time.UnixMilli(first + vals[2])
	}
	return nil
}

// GetTriplet returns the triplet unless it is missing or expired at now.
// An expired field may still sit in its bucket until a write sweeps it.
func (s *Store) GetTriplet(ctx context.Context, client, sender, recipient string, now time.Time) (store.Triplet, error) {
	if err := s.begin(ctx, "get triplet"); err != nil {
		return store.Triplet{}, err
	}
	field := tripletField(client, sender, recipient)
	v, err := s.c.HGet(ctx, s.bucket(field), field).Bytes()
	if errors.Is(err, goredis.Nil) {
		return store.Triplet{}, store.ErrNotFound
	}
	if err != nil {
		return store.Triplet{}, errf("get triplet", err)
	}
	t := store.Triplet{Client: client, Sender: sender, Recipient: recipient}
	if err := decodeTriplet(v, &t); err != nil {
		return store.Triplet{}, errf("get triplet", err)
	}
	if !now.Before(t.Expires) {
		return store.Triplet{}, store.ErrNotFound
	}
	return t, nil
}

// sweepLua defines sweep(bucket, now): it deletes the fields of the
// bucket whose expiry (the first six bytes of the value, unix ms; 0:
// none) is at or before now, sets the bucket's TTL to the latest expiry
// left, or none if a field has none, and returns how many it deleted.
const sweepLua = `
local function expiry(v)
  local a, b, c, d, e, f = string.byte(v, 1, 6)
  return ((((a * 256 + b) * 256 + c) * 256 + d) * 256 + e) * 256 + f
end
local function sweep(key, now)
  local all = redis.call('HGETALL', key)
  local gone, latest, forever = {}, 0, false
  for i = 1, #all, 2 do
    local e = expiry(all[i + 1])
    if e == 0 then forever = true
    elseif e <= now then gone[#gone + 1] = all[i]
    elseif e > latest then latest = e end
  end
  for i = 1, #gone, 5000 do
    redis.call('HDEL', key, unpack(gone, i, math.min(i + 4999, #gone)))
  end
  if #gone == #all / 2 then return #gone end
  if forever then redis.call('PERSIST', key)
  else redis.call('PEXPIREAT', key, string.format('%.0f', latest)) end
  return #gone
end
`

// putScript stores the field ARGV[1] with the value ARGV[2] in the
// bucket KEYS[1] and returns the value it replaced, if any. The bucket's
// TTL follows the latest expiry of its fields (ARGV[3], unix ms; 0:
// none), so an idle bucket goes by itself; a field added to a bucket of
// more than ARGV[4] fields first sweeps out the expired ones, by Redis's
// clock, so that a busy bucket stays small.
var putScript = goredis.NewScript(sweepLua + `
local key = KEYS[1]
local old = redis.call('HGET', key, ARGV[1])
local fresh = redis.call('EXISTS', key) == 0
if not old and not fresh and redis.call('HLEN', key) > tonumber(ARGV[4]) then
  local t = redis.call('TIME')
  sweep(key, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  fresh = redis.call('EXISTS', key) == 0
end
redis.call('HSET', key, ARGV[1], ARGV[2])
local exp = tonumber(ARGV[3])
if exp == 0 then
  redis.call('PERSIST', key)
elseif fresh then
  redis.call('PEXPIREAT', key, ARGV[3])
elseif redis.call('PTTL', key) >= 0 then
  redis.call('PEXPIREAT', key, ARGV[3], 'GT')
end
return old
`)

// sweepScript sweeps the bucket KEYS[1] at ARGV[1] (unix ms).
var sweepScript = goredis.NewScript(sweepLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return sweep(KEYS[1], tonumber(ARGV[1]))
`)

// sweepAbove is the bucket size past which adding a field sweeps the
// bucket: below Redis's default hash-max-listpack-entries (128), so
// that expired fields do not push a bucket out of its compact encoding.
const sweepAbove = 96

// putTriplet stores value under field and returns the value it
// replaced, nil if none.
func (s *Store) putTriplet(ctx context.Context, field string, value []byte) ([]byte, error) {
	if len(value) < 6 {
		return nil, errors.New("bad triplet value")
	}
	old, err := putScript.Run(ctx, s.c, []string{s.bucket(field)}, field, value, expiryOf(value), sweepAbove).Text()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	return []byte(old), err
}

// PutTriplet stores t in its bucket. Letting a triplet through by hand
// is audited; the triplet and the event live in different cluster
// slots, so no transaction holds both: the triplet is stored first,
// then the event, and if the event cannot be stored the triplet's
// previous value (or its absence) is put back, so that a change is
// never left without its record.
func (s *Store) PutTriplet(ctx context.Context, t store.Triplet) (err error) {
	defer s.countFailure(writefail.Triplet, &err)
	if err := s.begin(ctx, "put triplet"); err != nil {
		return err
	}
	field := tripletField(t.Client, t.Sender, t.Recipient)
	old, err := s.putTriplet(ctx, field, encodeTriplet(t))
	if err != nil {
		return errf("put triplet", err)
	}
	a := store.AuditFrom(ctx)
	if a == nil {
		return nil
	}
	if err := s.appendEvents(ctx, a.Event); err != nil {
		// Undo with a fresh context: the one given may be what failed.
		undo, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var uerr error
		if old == nil {
			uerr = s.c.HDel(undo, s.bucket(field), field).Err()
		} else {
			_, uerr = s.putTriplet(undo, field, old)
		}
		if uerr != nil {
			return errf("put triplet", fmt.Errorf("storing its audit event: %w; and putting the previous triplet back: %v", err, uerr))
		}
		return errf("put triplet (undone)", err)
	}
	a.MarkStored()
	return nil
}

// DeleteTriplet removes a triplet; a missing one is no error. The
// bucket keeps its TTL, which can only be later than what is left.
func (s *Store) DeleteTriplet(ctx context.Context, client, sender, recipient string) (err error) {
	defer s.countFailure(writefail.Triplet, &err)
	if err := s.begin(ctx, "delete triplet"); err != nil {
		return err
	}
	field := tripletField(client, sender, recipient)
	if err := s.c.HDel(ctx, s.bucket(field), field).Err(); err != nil {
		return errf("delete triplet", err)
	}
	return nil
}

// eachTriplet calls fn with every triplet stored, expired or not. It
// SCANs the buckets and reads each whole: O(n), for admin reads only.
func (s *Store) eachTriplet(ctx context.Context, fn func(store.Triplet)) error {
	return s.scan(ctx, s.k.pattern("t:"), func(keys []string) error {
		keys = slices.DeleteFunc(keys, func(k string) bool { return !s.k.isBucket(k) })
		pipe := s.c.Pipeline()
		cmds := make([]*goredis.MapStringStringCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.HGetAll(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		for _, c := range cmds {
			for f, v := range c.Val() {
				var t store.Triplet
				var ok bool
				if t.Client, t.Sender, t.Recipient, ok = parseTripletField(f); !ok {
					continue
				}
				if decodeTriplet([]byte(v), &t) == nil {
					fn(t)
				}
			}
		}
		return nil
	})
}

// ListTriplets returns the unexpired triplets matching f, newest
// LastSeen first, ties by keys in descending order as SQLite orders
// them. It scans every triplet.
func (s *Store) ListTriplets(ctx context.Context, f store.TripletFilter, now time.Time) ([]store.Triplet, error) {
	if err := s.begin(ctx, "list triplets"); err != nil {
		return nil, err
	}
	var out []store.Triplet
	err := s.eachTriplet(ctx, func(t store.Triplet) {
		if !now.Before(t.Expires) || f.Pending && t.Passed() || f.Passed && !t.Passed() ||
			f.Client != "" && t.Client != f.Client {
			return
		}
		out = append(out, t)
	})
	if err != nil {
		return nil, errf("list triplets", err)
	}
	slices.SortFunc(out, func(a, b store.Triplet) int {
		return -cmp.Or(a.LastSeen.Compare(b.LastSeen), cmp.Compare(a.Client, b.Client),
			cmp.Compare(a.Sender, b.Sender), cmp.Compare(a.Recipient, b.Recipient))
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// passScript counts a pass (KEYS[1]) at ARGV[1] and moves its expiry to
// ARGV[2] (unix ms); a record whose expiry has passed at ARGV[1], though
// its TTL by Redis's clock has not, starts again at 1.
var passScript = goredis.NewScript(`
local exp = redis.call('PEXPIRETIME', KEYS[1])
if exp >= 0 and exp <= tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) end
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return n
`)

// AddClientPass counts one more pass from client and moves its expiry.
func (s *Store) AddClientPass(ctx context.Context, client string, now, expires time.Time) (_ int, err error) {
	defer s.countFailure(writefail.Pass, &err)
	if err := s.begin(ctx, "add client pass"); err != nil {
		return 0, err
	}
	n, err := passScript.Run(ctx, s.c, []string{s.k.pass(client)}, now.UnixMilli(), expires.UnixMilli()).Int()
	if err != nil {
		return 0, errf("add client pass", err)
	}
	return n, nil
}

// ClientPasses returns client's unexpired pass count, 0 if none.
func (s *Store) ClientPasses(ctx context.Context, client string, now time.Time) (int, error) {
	if err := s.begin(ctx, "client passes"); err != nil {
		return 0, err
	}
	ps, err := s.passes(ctx, []string{s.k.pass(client)})
	if err != nil {
		return 0, errf("client passes", err)
	}
	if len(ps) == 0 || !now.Before(ps[0].Expires) {
		return 0, nil
	}
	return ps[0].Passes, nil
}

// passes reads the pass records under keys, leaving out missing ones.
func (s *Store) passes(ctx context.Context, keys []string) ([]store.ClientPass, error) {
	pipe := s.c.Pipeline()
	gets := make([]*goredis.StringCmd, len(keys))
	exps := make([]*goredis.Cmd, len(keys))
	for i, k := range keys {
		gets[i] = pipe.Get(ctx, k)
		exps[i] = pipe.Do(ctx, "PEXPIRETIME", k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, err
	}
	var out []store.ClientPass
	for i, k := range keys {
		v, err := gets[i].Result()
		exp, _ := exps[i].Int64()
		if err != nil || exp <= 0 {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			continue
		}
		out = append(out, store.ClientPass{Client: k[len(s.k.prefix)+len("p:"):], Passes: n, Expires: time.UnixMilli(exp)})
	}
	return out, nil
}

// eachPass calls fn with every pass record stored. It SCANs.
func (s *Store) eachPass(ctx context.Context, fn func(store.ClientPass)) error {
	return s.scan(ctx, s.k.pattern("p:"), func(keys []string) error {
		ps, err := s.passes(ctx, keys)
		for _, p := range ps {
			fn(p)
		}
		return err
	})
}

// ListClientPasses returns the unexpired pass records with at least
// minPasses passes, most passes first, then by client. It scans every
// pass record.
func (s *Store) ListClientPasses(ctx context.Context, now time.Time, minPasses, max int) ([]store.ClientPass, error) {
	if err := s.begin(ctx, "list client passes"); err != nil {
		return nil, err
	}
	var out []store.ClientPass
	err := s.eachPass(ctx, func(p store.ClientPass) {
		if now.Before(p.Expires) && p.Passes >= minPasses {
			out = append(out, p)
		}
	})
	if err != nil {
		return nil, errf("list client passes", err)
	}
	slices.SortFunc(out, func(a, b store.ClientPass) int {
		return cmp.Or(cmp.Compare(b.Passes, a.Passes), cmp.Compare(a.Client, b.Client))
	})
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return out, nil
}

// GreylistStats counts the unexpired triplets and whitelisted clients.
// It scans every triplet and pass record.
func (s *Store) GreylistStats(ctx context.Context, now time.Time, whitelistAfter int) (store.GreylistStats, error) {
	if err := s.begin(ctx, "greylist stats"); err != nil {
		return store.GreylistStats{}, err
	}
	var st store.GreylistStats
	err := s.eachTriplet(ctx, func(t store.Triplet) {
		switch {
		case !now.Before(t.Expires):
		case t.Passed():
			st.Passed++
		default:
			st.Pending++
		}
	})
	if err == nil {
		err = s.eachPass(ctx, func(p store.ClientPass) {
			if now.Before(p.Expires) && p.Passes >= whitelistAfter {
				st.WhitelistedClients++
			}
		})
	}
	if err != nil {
		return store.GreylistStats{}, errf("greylist stats", err)
	}
	return st, nil
}

// ImportClientPass sets p.Client's pass count and expiry.
func (s *Store) ImportClientPass(ctx context.Context, p store.ClientPass) error {
	if err := s.begin(ctx, "import client pass"); err != nil {
		return err
	}
	err := s.c.Do(ctx, "SET", s.k.pass(p.Client), p.Passes, "PXAT", p.Expires.UnixMilli()).Err()
	if err != nil {
		return errf("import client pass", err)
	}
	return nil
}
