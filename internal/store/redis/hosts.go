package redis

import (
	"cmp"
	"context"
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

// merge reads fields of the JSON hash key, lets fn compute what to
// write, and writes it in a transaction that WATCHes the hash, so two
// hosts merging evidence for one client do not lose either's.
func merge[T any](ctx context.Context, s *Store, key string, names []string, fn func(old []*T) map[string]T) error {
	return s.watch(ctx, func(tx *goredis.Tx) error {
		vals, err := tx.HMGet(ctx, key, names...).Result()
		if err != nil {
			return err
		}
		old := make([]*T, len(vals))
		for i, v := range vals {
			if raw, ok := v.(string); ok {
				var x T
				if err := json.Unmarshal([]byte(raw), &x); err != nil {
					return fmt.Errorf("%s: %w", names[i], err)
				}
				old[i] = &x
			}
		}
		set := fn(old)
		if len(set) == 0 {
			return nil
		}
		args := make([]any, 0, 2*len(set))
		for k, v := range set {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			args = append(args, k, b)
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.HSet(ctx, key, args...)
			return nil
		})
		return err
	}, key)
}

// readAll returns every value of the JSON hash key.
func readAll[T any](ctx context.Context, s *Store, key string) ([]T, error) {
	m, err := s.c.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(m))
	for k, v := range m {
		var x T
		if err := json.Unmarshal([]byte(v), &x); err != nil {
			return nil, fmt.Errorf("%s: %w", strings.ReplaceAll(k, "\x00", " "), err)
		}
		out = append(out, x)
	}
	return out, nil
}

// AddTrapHits merges each record into its client's running total by the
// rules of store.Hosts. A record without FirstSeen counts as first seen
// at its LastSeen.
func (s *Store) AddTrapHits(ctx context.Context, recs ...store.TrapRecord) (err error) {
	defer s.countFailure(writefail.Host, &err)
	for _, r := range recs {
		if r.Client == "" || r.LastSeen.IsZero() {
			return fmt.Errorf("redis: add trap hits: client %q and its LastSeen must be set", r.Client)
		}
	}
	if err := s.begin(ctx, "add trap hits"); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	var names []string
	for _, r := range recs {
		if !slices.Contains(names, r.Client) {
			names = append(names, r.Client)
		}
	}
	err = merge(ctx, s, s.k.trap, names, func(old []*store.TrapRecord) map[string]store.TrapRecord {
		cur := make(map[string]store.TrapRecord)
		for i, o := range old {
			if o != nil {
				cur[names[i]] = *o
			}
		}
		for _, r := range recs {
			cur[r.Client] = store.MergeTrap(cur[r.Client], r)
		}
		return cur
	})
	if err != nil {
		return errf("add trap hits", err)
	}
	return nil
}

// TrapRecords returns client's total, or every client's for "", newest
// LastSeen first, then by client.
func (s *Store) TrapRecords(ctx context.Context, client string) ([]store.TrapRecord, error) {
	if err := s.begin(ctx, "trap records"); err != nil {
		return nil, err
	}
	var out []store.TrapRecord
	if client != "" {
		raw, err := s.c.HGet(ctx, s.k.trap, client).Result()
		if errors.Is(err, goredis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, errf("trap records", err)
		}
		var r store.TrapRecord
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, errf("trap records", err)
		}
		return []store.TrapRecord{r}, nil
	}
	out, err := readAll[store.TrapRecord](ctx, s, s.k.trap)
	if err != nil {
		return nil, errf("trap records", err)
	}
	slices.SortFunc(out, func(a, b store.TrapRecord) int {
		return cmp.Or(b.LastSeen.Compare(a.LastSeen), cmp.Compare(a.Client, b.Client))
	})
	return out, nil
}

// portField is a port's field in the ports hash.
func portField(client string, port int) string { return client + "\x00" + strconv.Itoa(port) }

// RecordPort keeps the newest state of f's port; an older finding only
// moves FirstOpen back, and a closed port never seen open is not kept.
func (s *Store) RecordPort(ctx context.Context, f store.PortFinding) (err error) {
	defer s.countFailure(writefail.Host, &err)
	if f.Client == "" || f.Port <= 0 || f.Time.IsZero() {
		return fmt.Errorf("redis: record port: client %q, port %d and time must be set", f.Client, f.Port)
	}
	if err := s.begin(ctx, "record port"); err != nil {
		return err
	}
	field := portField(f.Client, f.Port)
	err = merge(ctx, s, s.k.ports, []string{field}, func(old []*store.PortState) map[string]store.PortState {
		if old[0] == nil {
			if !f.Open {
				return nil
			}
			return map[string]store.PortState{field: {Client: f.Client, Port: f.Port, Open: true, FirstOpen: f.Time, LastChecked: f.Time}}
		}
		p := *old[0]
		if !f.Time.Before(p.LastChecked) {
			p.Open, p.LastChecked = f.Open, f.Time
		}
		if f.Open && (p.FirstOpen.IsZero() || f.Time.Before(p.FirstOpen)) {
			p.FirstOpen = f.Time
		}
		return map[string]store.PortState{field: p}
	})
	if err != nil {
		return errf("record port", err)
	}
	return nil
}

// Ports returns every kept state of client's ports, by port.
func (s *Store) Ports(ctx context.Context, client string) ([]store.PortState, error) {
	return s.portStates(ctx, "ports", func(p store.PortState) bool { return p.Client == client })
}

// OpenPorts returns the open ports of client, or of every client for "",
// by client and port.
func (s *Store) OpenPorts(ctx context.Context, client string) ([]store.PortState, error) {
	return s.portStates(ctx, "open ports", func(p store.PortState) bool { return p.Open && (client == "" || p.Client == client) })
}

// AllPorts returns every kept port state, by client and port.
func (s *Store) AllPorts(ctx context.Context) ([]store.PortState, error) {
	return s.portStates(ctx, "all ports", func(store.PortState) bool { return true })
}

func (s *Store) portStates(ctx context.Context, op string, keep func(store.PortState) bool) ([]store.PortState, error) {
	if err := s.begin(ctx, op); err != nil {
		return nil, err
	}
	all, err := readAll[store.PortState](ctx, s, s.k.ports)
	if err != nil {
		return nil, errf(op, err)
	}
	out := slices.DeleteFunc(all, func(p store.PortState) bool { return !keep(p) })
	slices.SortFunc(out, func(a, b store.PortState) int {
		return cmp.Or(cmp.Compare(a.Client, b.Client), cmp.Compare(a.Port, b.Port))
	})
	return out, nil
}

// ImportPort stores one port state as given.
func (s *Store) ImportPort(ctx context.Context, p store.PortState) error {
	if err := s.begin(ctx, "import port"); err != nil {
		return err
	}
	b, err := json.Marshal(p)
	if err == nil {
		err = s.c.HSet(ctx, s.k.ports, portField(p.Client, p.Port), b).Err()
	}
	if err != nil {
		return errf("import port", err)
	}
	return nil
}

// RecordLogin keeps l if it is the newest login from its client.
func (s *Store) RecordLogin(ctx context.Context, l store.MailLogin) (err error) {
	defer s.countFailure(writefail.Host, &err)
	if l.Client == "" || l.Time.IsZero() {
		return fmt.Errorf("redis: record login: client %q and time must be set", l.Client)
	}
	if err := s.begin(ctx, "record login"); err != nil {
		return err
	}
	err = merge(ctx, s, s.k.logins, []string{l.Client}, func(old []*store.MailLogin) map[string]store.MailLogin {
		if old[0] != nil && l.Time.Before(old[0].Time) {
			return nil
		}
		return map[string]store.MailLogin{l.Client: l}
	})
	if err != nil {
		return errf("record login", err)
	}
	return nil
}

// LastLogin returns the newest login from client.
func (s *Store) LastLogin(ctx context.Context, client string) (store.MailLogin, error) {
	if err := s.begin(ctx, "last login"); err != nil {
		return store.MailLogin{}, err
	}
	raw, err := s.c.HGet(ctx, s.k.logins, client).Result()
	if errors.Is(err, goredis.Nil) {
		return store.MailLogin{}, errf("last login from "+client, store.ErrNotFound)
	}
	var l store.MailLogin
	if err == nil {
		err = json.Unmarshal([]byte(raw), &l)
	}
	if err != nil {
		return store.MailLogin{}, errf("last login from "+client, err)
	}
	return l, nil
}

// LastLogins returns every client's newest login, by client.
func (s *Store) LastLogins(ctx context.Context) ([]store.MailLogin, error) {
	if err := s.begin(ctx, "last logins"); err != nil {
		return nil, err
	}
	out, err := readAll[store.MailLogin](ctx, s, s.k.logins)
	if err != nil {
		return nil, errf("last logins", err)
	}
	slices.SortFunc(out, func(a, b store.MailLogin) int { return cmp.Compare(a.Client, b.Client) })
	return out, nil
}

// pushScript appends arg(1) to the list KEYS[6] with the audit.
var pushScript = goredis.NewScript(auditLua + `
redis.call('RPUSH', KEYS[6], arg(1))
audit()
return {'ok'}
`)

// AddHostNote stores n with the audit ctx carries.
func (s *Store) AddHostNote(ctx context.Context, n store.HostNote) (err error) {
	defer s.countFailure(writefail.Host, &err)
	return addHostRecord(ctx, s, s.k.notes, n, "add note on", n.Client, n.Time)
}

// HostNotes returns client's notes, or every client's for "", by client
// and then oldest first.
func (s *Store) HostNotes(ctx context.Context, client string) ([]store.HostNote, error) {
	return hostRecords(ctx, s, s.k.notes, "notes", client, func(n store.HostNote) (string, time.Time) { return n.Client, n.Time })
}

// AddDisinfection stores d with the audit ctx carries.
func (s *Store) AddDisinfection(ctx context.Context, d store.Disinfection) (err error) {
	defer s.countFailure(writefail.Host, &err)
	return addHostRecord(ctx, s, s.k.disinf, d, "add disinfection of", d.Client, d.Time)
}

// Disinfections returns client's disinfections, or every client's for
// "", as HostNotes orders notes.
func (s *Store) Disinfections(ctx context.Context, client string) ([]store.Disinfection, error) {
	return hostRecords(ctx, s, s.k.disinf, "disinfections", client, func(d store.Disinfection) (string, time.Time) { return d.Client, d.Time })
}

func addHostRecord[T any](ctx context.Context, s *Store, key string, rec T, what, client string, at time.Time) error {
	if client == "" || at.IsZero() {
		return fmt.Errorf("redis: %s %s: client and time must be set", what, client)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return errf(what+" "+client, err)
	}
	_, err = s.change(ctx, what+" "+client, pushScript, []string{key}, b)
	return err
}

// hostRecords reads the list key: a host has few notes, and the list of
// every host's is an admin read.
func hostRecords[T any](ctx context.Context, s *Store, key, what, client string, by func(T) (string, time.Time)) ([]T, error) {
	if err := s.begin(ctx, what); err != nil {
		return nil, err
	}
	raws, err := s.c.LRange(ctx, key, 0, -1).Result()
	if err != nil {
		return nil, errf(what, err)
	}
	var out []T
	for _, raw := range raws {
		var x T
		if err := json.Unmarshal([]byte(raw), &x); err != nil {
			return nil, errf(what, err)
		}
		if c, _ := by(x); client == "" || c == client {
			out = append(out, x)
		}
	}
	slices.SortStableFunc(out, func(a, b T) int {
		ca, ta := by(a)
		cb, tb := by(b)
		return cmp.Or(cmp.Compare(ca, cb), ta.Compare(tb))
	})
	return out, nil
}
