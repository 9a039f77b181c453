package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"mailwarden/internal/store"
	"mailwarden/internal/store/writefail"
)

// member spells an event or alert ID as its hash field and sorted-set
// member: zero-padded, so that members of one score sort by ID.
func member(id int64) string { return fmt.Sprintf("%020d", id) }

// AppendEvents stores evs, each with the next ID, in one script.
func (s *Store) AppendEvents(ctx context.Context, evs ...store.Event) (err error) {
	defer s.countFailure(writefail.Event, &err)
	if err := s.begin(ctx, "append events"); err != nil {
		return err
	}
	if err := s.appendEvents(ctx, evs...); err != nil {
		return errf("append events", err)
	}
	return nil
}

// eventPage is how many event IDs QueryEvents reads at a time.
const eventPage = 500

// QueryEvents returns the events matching f, newest first (ties by ID),
// or for a tail those after f.AfterID in ID order, leaving out those
// past retention by the real clock. It walks the time index (or for a
// tail the ID index) a page at a time and filters the rest here.
func (s *Store) QueryEvents(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	if err := s.begin(ctx, "query events"); err != nil {
		return nil, err
	}
	now := time.Now()
	var out []store.Event
	for offset := int64(0); ; offset += eventPage {
		var ids []string
		var err error
		if f.Tail {
			ids, err = s.c.ZRangeByScore(ctx, s.k.evID, &goredis.ZRangeBy{
				Min: "(" + strconv.FormatInt(f.AfterID, 10), Max: "+inf", Offset: offset, Count: eventPage}).Result()
		} else {
			lo, hi := "-inf", "+inf"
			if !f.Since.IsZero() {
				lo = strconv.FormatInt(f.Since.UnixMilli(), 10)
			}
			if !f.Until.IsZero() {
				hi = "(" + strconv.FormatInt(f.Until.UnixMilli(), 10)
			}
			ids, err = s.c.ZRevRangeByScore(ctx, s.k.evTime, &goredis.ZRangeBy{
				Min: lo, Max: hi, Offset: offset, Count: eventPage}).Result()
		}
		if err != nil {
			return nil, errf("query events", err)
		}
		if len(ids) == 0 {
			return out, nil
		}
		vals, err := s.c.HMGet(ctx, s.k.ev, ids...).Result()
		if err != nil {
			return nil, errf("query events", err)
		}
		for i, v := range vals {
			raw, ok := v.(string)
			if !ok {
				continue // trimmed since the index was read
			}
			var e store.Event
			if err := json.Unmarshal([]byte(raw), &e); err != nil {
				return nil, errf("query events", fmt.Errorf("event %s: %w", ids[i], err))
			}
			e.ID, _ = strconv.ParseInt(ids[i], 10, 64)
			if !e.Expires.IsZero() && !now.Before(e.Expires) ||
				!f.Since.IsZero() && e.Time.Before(f.Since) || !f.Until.IsZero() && !e.Time.Before(f.Until) ||
				f.Kind != "" && e.Kind != f.Kind || f.Client != "" && e.Client != f.Client ||
				f.User != "" && e.User != f.User {
				continue
			}
			out = append(out, e)
			if f.Limit > 0 && len(out) == f.Limit {
				return out, nil
			}
		}
		if len(ids) < eventPage {
			return out, nil
		}
	}
}

// importEventsScript stores events with their IDs: ARGV holds
// quadruples of ID, JSON, time and retention end; the ID counter
// KEYS[1] moves up to the largest.
var importEventsScript = goredis.NewScript(`
local top = tonumber(redis.call('GET', KEYS[1]) or '0')
for i = 1, #ARGV, 4 do
  local id = tonumber(ARGV[i])
  local m = string.format('%020d', id)
  redis.call('HSET', KEYS[2], m, ARGV[i+1])
  redis.call('ZADD', KEYS[3], ARGV[i+2], m)
  redis.call('ZADD', KEYS[4], id, m)
  redis.call('ZADD', KEYS[5], ARGV[i+3], m)
  if id > top then top = id end
end
redis.call('SET', KEYS[1], string.format('%d', top))
return 0
`)

// ImportEvents stores evs with their IDs and expiry.
func (s *Store) ImportEvents(ctx context.Context, evs ...store.Event) error {
	if err := s.begin(ctx, "import events"); err != nil {
		return err
	}
	var args []any
	for _, e := range evs {
		a, err := eventArgs(e)
		if err != nil {
			return errf("import events", err)
		}
		args = append(args, e.ID)
		args = append(args, a...)
	}
	if len(args) == 0 {
		return nil
	}
	if err := importEventsScript.Run(ctx, s.c, s.eventKeys(), args...).Err(); err != nil {
		return errf("import events", err)
	}
	return nil
}

// alertKeys are the keys of the alert scripts.
func (s *Store) alertKeys() []string {
	return []string{s.k.alSeq, s.k.al, s.k.alIDs, s.k.alPending, s.k.alExp, s.k.alCursor}
}

// addAlertsScript stores alerts: ARGV[1] is the cursor, then triples of
// JSON, "1" if pending, and the expiry score. It replies with the IDs
// given. With ARGV[2] "import", the triples are quadruples led by the
// alert's own ID, and the counter moves up to the largest.
var addAlertsScript = goredis.NewScript(`
local ids = {}
local imp = ARGV[2] == 'import'
local step, first = 3, 3
if imp then step, first = 4, 3 end
local top = tonumber(redis.call('GET', KEYS[1]) or '0')
for i = first, #ARGV, step do
  local id
  if imp then id = tonumber(ARGV[i]); i = i + 1 else id = redis.call('INCR', KEYS[1]) end
  local m = string.format('%020d', id)
  redis.call('HSET', KEYS[2], m, ARGV[i])
  redis.call('ZADD', KEYS[3], id, m)
  if ARGV[i+1] == '1' then redis.call('ZADD', KEYS[4], id, m) else redis.call('ZREM', KEYS[4], m) end
  redis.call('ZADD', KEYS[5], ARGV[i+2], m)
  if id > top then top = id end
  ids[#ids+1] = id
end
if imp then redis.call('SET', KEYS[1], string.format('%d', top)) end
local cur = tonumber(redis.call('GET', KEYS[6]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[6], ARGV[1]) end
return ids
`)

// alertArgs returns the script arguments that store a.
func alertArgs(a store.Alert) ([]any, error) {
	if a.State == "" {
		a.State = store.AlertPending
	}
	a.ID = 0 // the hash field holds it
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	pending := "0"
	if a.State == store.AlertPending {
		pending = "1"
	}
	return []any{b, pending, score(a.Expires)}, nil
}

// AddAlerts stores alerts and moves the alert cursor in one script.
func (s *Store) AddAlerts(ctx context.Context, alerts []store.Alert, cursor int64) (_ []int64, err error) {
	defer s.countFailure(writefail.Alert, &err)
	if err := s.begin(ctx, "add alerts"); err != nil {
		return nil, err
	}
	args := []any{cursor, "add"}
	for _, a := range alerts {
		aa, err := alertArgs(a)
		if err != nil {
			return nil, errf("add alerts", err)
		}
		args = append(args, aa...)
	}
	ids, err := addAlertsScript.Run(ctx, s.c, s.alertKeys(), args...).Int64Slice()
	if err != nil {
		return nil, errf("add alerts", err)
	}
	return ids, nil
}

// ImportAlerts stores alerts as given and moves the cursor to at least
// cursor.
func (s *Store) ImportAlerts(ctx context.Context, alerts []store.Alert, cursor int64) error {
	if err := s.begin(ctx, "import alerts"); err != nil {
		return err
	}
	args := []any{cursor, "import"}
	for _, a := range alerts {
		aa, err := alertArgs(a)
		if err != nil {
			return errf("import alerts", err)
		}
		args = append(args, a.ID)
		args = append(args, aa...)
	}
	if err := addAlertsScript.Run(ctx, s.c, s.alertKeys(), args...).Err(); err != nil && !errors.Is(err, goredis.Nil) {
		return errf("import alerts", err)
	}
	return nil
}

// AlertCursor returns the stored cursor.
func (s *Store) AlertCursor(ctx context.Context) (int64, error) {
	if err := s.begin(ctx, "alert cursor"); err != nil {
		return 0, err
	}
	c, err := s.c.Get(ctx, s.k.alCursor).Int64()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, errf("alert cursor", err)
	}
	return c, nil
}

// MarkAlert records delivery attempts. The alert is read, changed and
// written back in a transaction that WATCHes the outbox.
func (s *Store) MarkAlert(ctx context.Context, u store.AlertUpdate) (err error) {
	defer s.countFailure(writefail.Alert, &err)
	if err := s.begin(ctx, "mark alert"); err != nil {
		return err
	}
	m := member(u.ID)
	err = s.watch(ctx, func(tx *goredis.Tx) error {
		raw, err := tx.HGet(ctx, s.k.al, m).Result()
		if errors.Is(err, goredis.Nil) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		var a store.Alert
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return err
		}
		a.State, a.Attempts, a.NextTry, a.SentAt, a.Error = u.State, u.Attempts, u.NextTry, u.SentAt, u.Error
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.HSet(ctx, s.k.al, m, b)
			if a.State == store.AlertPending {
				p.ZAdd(ctx, s.k.alPending, goredis.Z{Score: float64(u.ID), Member: m})
			} else {
				p.ZRem(ctx, s.k.alPending, m)
			}
			return nil
		})
		return err
	}, s.k.al)
	if err != nil {
		return errf(fmt.Sprintf("mark alert %d", u.ID), err)
	}
	return nil
}

// watch runs fn in an optimistic transaction on keys, again while
// another client changes them first.
func (s *Store) watch(ctx context.Context, fn func(*goredis.Tx) error, keys ...string) error {
	for range 50 {
		err := s.c.Watch(ctx, fn, keys...)
		if !errors.Is(err, goredis.TxFailedErr) {
			return err
		}
	}
	return errors.New("too much contention: gave up after 50 tries")
}

// PendingAlerts returns up to n pending alerts, oldest first.
func (s *Store) PendingAlerts(ctx context.Context, n int) ([]store.Alert, error) {
	if err := s.begin(ctx, "pending alerts"); err != nil {
		return nil, err
	}
	ids, err := s.c.ZRange(ctx, s.k.alPending, 0, int64(n)-1).Result()
	if err != nil {
		return nil, errf("pending alerts", err)
	}
	return s.alerts(ctx, "pending alerts", ids)
}

// RecentAlerts returns up to n alerts, newest first.
func (s *Store) RecentAlerts(ctx context.Context, n int) ([]store.Alert, error) {
	if err := s.begin(ctx, "recent alerts"); err != nil {
		return nil, err
	}
	ids, err := s.c.ZRevRange(ctx, s.k.alIDs, 0, int64(n)-1).Result()
	if err != nil {
		return nil, errf("recent alerts", err)
	}
	return s.alerts(ctx, "recent alerts", ids)
}

// alerts reads the alerts ids names, in that order.
func (s *Store) alerts(ctx context.Context, op string, ids []string) ([]store.Alert, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	vals, err := s.c.HMGet(ctx, s.k.al, ids...).Result()
	if err != nil {
		return nil, errf(op, err)
	}
	out := make([]store.Alert, 0, len(ids))
	for i, v := range vals {
		raw, ok := v.(string)
		if !ok {
			continue
		}
		var a store.Alert
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return nil, errf(op, fmt.Errorf("alert %s: %w", ids[i], err))
		}
		a.ID, _ = strconv.ParseInt(ids[i], 10, 64)
		out = append(out, a)
	}
	return out, nil
}
