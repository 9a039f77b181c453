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
)

// appendLua stores an event: the next ID from KEYS[1], the JSON in the
// hash KEYS[2] under the zero-padded ID (so that IDs sort as text), and
// the ID in the indexes by time (KEYS[3]), by ID (KEYS[4]) and by
// retention end (KEYS[5]).
const appendLua = `
local function append(json, t, exp)
  local id = redis.call('INCR', KEYS[1])
  local m = string.format('%020d', id)
  redis.call('HSET', KEYS[2], m, json)
  redis.call('ZADD', KEYS[3], t, m)
  redis.call('ZADD', KEYS[4], id, m)
  redis.call('ZADD', KEYS[5], exp, m)
  return id
end
`

// auditLua prefixes an audited change: its script calls audit() once
// the change is made, which stores the event in ARGV[1..3] (JSON, time,
// retention end; ARGV[1] "" for none). The change's own keys start at
// KEYS[6] and its arguments at ARGV[4], which arg() reads.
const auditLua = appendLua + `
local function audit()
  if ARGV[1] ~= '' then append(ARGV[1], ARGV[2], ARGV[3]) end
end
local function arg(i) return ARGV[i + 3] end
`

// appendScript appends events: ARGV holds triples of JSON, time and
// retention end.
var appendScript = goredis.NewScript(appendLua + `
for i = 1, #ARGV, 3 do append(ARGV[i], ARGV[i+1], ARGV[i+2]) end
return 0
`)

// eventKeys are KEYS[1..5] of every script that appends events.
func (s *Store) eventKeys(more ...string) []string {
	return append([]string{s.k.evSeq, s.k.ev, s.k.evTime, s.k.evID, s.k.evExp}, more...)
}

// eventArgs returns the three script arguments that store e.
func eventArgs(e store.Event) ([]any, error) {
	e.ID = 0
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	exp := "+inf"
	if !e.Expires.IsZero() {
		exp = strconv.FormatInt(e.Expires.UnixMilli(), 10)
	}
	return []any{b, ms(e.Time), exp}, nil
}

// auditArgs returns the audit ctx carries, if any, and the first three
// arguments of an audited script.
func auditArgs(ctx context.Context) (*store.Audit, []any, error) {
	a := store.AuditFrom(ctx)
	if a == nil {
		return nil, []any{"", 0, 0}, nil
	}
	args, err := eventArgs(a.Event)
	return a, args, err
}

// appendEvents stores evs with the next IDs, in one script.
func (s *Store) appendEvents(ctx context.Context, evs ...store.Event) error {
	if len(evs) == 0 {
		return nil
	}
	var args []any
	for _, e := range evs {
		a, err := eventArgs(e)
		if err != nil {
			return err
		}
		args = append(args, a...)
	}
	return appendScript.Run(ctx, s.c, s.eventKeys(), args...).Err()
}

// change runs an audited script: keys after the event keys, args after
// the audit's. The script returns "ok", or a word that names why the
// change was refused ("notfound", "exists", "notactive"), which becomes
// the matching store error; the audit is marked stored only on "ok".
// It returns the script's reply after the word.
func (s *Store) change(ctx context.Context, op string, script *goredis.Script, keys []string, args ...any) ([]any, error) {
	if err := s.begin(ctx, op); err != nil {
		return nil, err
	}
	a, aargs, err := auditArgs(ctx)
	if err != nil {
		return nil, errf(op, err)
	}
	res, err := script.Run(ctx, s.c, s.eventKeys(keys...), append(aargs, args...)...).Slice()
	if err != nil {
		return nil, errf(op, err)
	}
	if err := refusal(res); err != nil {
		return nil, errf(op, err)
	}
	if a != nil {
		a.MarkStored()
	}
	return res[1:], nil
}

// refusal turns the word a script replied with into an error.
func refusal(res []any) error {
	if len(res) == 0 {
		return errors.New("empty reply from script")
	}
	switch w, _ := res[0].(string); w {
	case "ok":
		return nil
	case "notfound":
		return store.ErrNotFound
	case "exists":
		return store.ErrExists
	case "notactive":
		return store.ErrNotActive
	default:
		return fmt.Errorf("unexpected reply %q from script", w)
	}
}

// fields turns a flat HGETALL reply inside a script reply into a map.
func fields(v any) map[string]string {
	xs, _ := v.([]any)
	m := make(map[string]string, len(xs)/2)
	for i := 0; i+1 < len(xs); i += 2 {
		k, _ := xs[i].(string)
		v, _ := xs[i+1].(string)
		m[k] = v
	}
	return m
}

// msField reads a unix-ms field as a time; "" and "0" are the zero time.
func msField(m map[string]string, k string) time.Time {
	v, _ := strconv.ParseInt(m[k], 10, 64)
	return fromMS(v)
}

// score formats a time as a sorted-set score.
func score(t time.Time) string {
	if t.IsZero() {
		return "+inf"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}
