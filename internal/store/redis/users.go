package redis

import (
	"context"
	"fmt"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"mailwarden/internal/store"
	"mailwarden/internal/store/writefail"
)

// A user is the hash PREFIX{mw}:user:NAME (role, hash, created,
// changed), and its name is in the set PREFIX{mw}:users.

var addUserScript = goredis.NewScript(auditLua + `
if redis.call('EXISTS', KEYS[6]) == 1 then return {'exists'} end
redis.call('HSET', KEYS[6], 'role', arg(1), 'hash', arg(2), 'created', arg(3), 'changed', arg(4))
redis.call('SADD', KEYS[7], arg(5))
audit()
return {'ok'}
`)

var updateUserScript = goredis.NewScript(auditLua + `
if redis.call('EXISTS', KEYS[6]) == 0 then return {'notfound'} end
redis.call('HSET', KEYS[6], 'role', arg(1), 'hash', arg(2), 'changed', arg(3))
audit()
return {'ok'}
`)

var deleteUserScript = goredis.NewScript(auditLua + `
if redis.call('DEL', KEYS[6]) == 0 then return {'notfound'} end
redis.call('SREM', KEYS[7], arg(1))
audit()
return {'ok'}
`)

// importUserScript replaces a user as given.
var importUserScript = goredis.NewScript(`
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'role', ARGV[1], 'hash', ARGV[2], 'created', ARGV[3], 'changed', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
return 0
`)

func timeText(t time.Time) string { return t.Format(time.RFC3339Nano) }

// AddUser stores a new user with the audit ctx carries, or returns
// store.ErrExists. A zero Changed is stored as Created.
func (s *Store) AddUser(ctx context.Context, u store.User) (err error) {
	defer s.countFailure(writefail.User, &err)
	if err := u.Check(); err != nil {
		return fmt.Errorf("redis: add user %q: %w", u.Name, err)
	}
	if u.Created.IsZero() {
		return fmt.Errorf("redis: add user %q: created time must be set", u.Name)
	}
	if u.Changed.IsZero() {
		u.Changed = u.Created
	}
	_, err = s.change(ctx, fmt.Sprintf("add user %q", u.Name), addUserScript, []string{s.k.user(u.Name), s.k.users},
		u.Role, u.Hash, timeText(u.Created), timeText(u.Changed), u.Name)
	return err
}

// UpdateUser replaces the role, hash and Changed of the user u.Name with
// the audit ctx carries, or returns store.ErrNotFound.
func (s *Store) UpdateUser(ctx context.Context, u store.User) (err error) {
	defer s.countFailure(writefail.User, &err)
	if err := u.Check(); err != nil {
		return fmt.Errorf("redis: update user %q: %w", u.Name, err)
	}
	if u.Changed.IsZero() {
		return fmt.Errorf("redis: update user %q: changed time must be set", u.Name)
	}
	_, err = s.change(ctx, fmt.Sprintf("update user %q", u.Name), updateUserScript, []string{s.k.user(u.Name)},
		u.Role, u.Hash, timeText(u.Changed))
	return err
}

// DeleteUser removes the user named name with the audit ctx carries, or
// returns store.ErrNotFound.
func (s *Store) DeleteUser(ctx context.Context, name string) (err error) {
	defer s.countFailure(writefail.User, &err)
	_, err = s.change(ctx, fmt.Sprintf("delete user %q", name), deleteUserScript, []string{s.k.user(name), s.k.users}, name)
	return err
}

// ImportUser stores u as given, replacing a user of the same name.
func (s *Store) ImportUser(ctx context.Context, u store.User) error {
	if err := s.begin(ctx, "import user"); err != nil {
		return err
	}
	err := importUserScript.Run(ctx, s.c, []string{s.k.user(u.Name), s.k.users},
		u.Role, u.Hash, timeText(u.Created), timeText(u.Changed), u.Name).Err()
	if err != nil {
		return errf(fmt.Sprintf("import user %q", u.Name), err)
	}
	return nil
}

func userFrom(name string, m map[string]string) store.User {
	u := store.User{Name: name, Role: m["role"], Hash: []byte(m["hash"])}
	u.Created, _ = time.Parse(time.RFC3339Nano, m["created"])
	u.Changed, _ = time.Parse(time.RFC3339Nano, m["changed"])
	return u
}

// GetUser returns the user named name.
func (s *Store) GetUser(ctx context.Context, name string) (store.User, error) {
	if err := s.begin(ctx, "get user"); err != nil {
		return store.User{}, err
	}
	m, err := s.c.HGetAll(ctx, s.k.user(name)).Result()
	if err == nil && len(m) == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.User{}, errf(fmt.Sprintf("get user %q", name), err)
	}
	return userFrom(name, m), nil
}

// ListUsers returns every user, by name.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	if err := s.begin(ctx, "list users"); err != nil {
		return nil, err
	}
	names, err := s.c.SMembers(ctx, s.k.users).Result()
	if err != nil {
		return nil, errf("list users", err)
	}
	slices.Sort(names)
	pipe := s.c.Pipeline()
	cmds := make([]*goredis.MapStringStringCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HGetAll(ctx, s.k.user(n))
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, errf("list users", err)
		}
	}
	var out []store.User
	for i, c := range cmds {
		if m := c.Val(); len(m) > 0 {
			out = append(out, userFrom(names[i], m))
		}
	}
	return out, nil
}
