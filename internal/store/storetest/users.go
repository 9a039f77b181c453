package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// The hashes are opaque to a store; any bytes do, including bytes that
// are not valid UTF-8, which a text column could mangle.
var (
	hashA = []byte("$2a$11$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xff")
	hashB = []byte("$2a$11$bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\x00")
)

func addUser(t *testing.T, s store.Store, u store.User) {
	t.Helper()
	if err := s.AddUser(context.Background(), u); err != nil {
		t.Fatalf("AddUser(%q): %v", u.Name, err)
	}
}

func getUser(t *testing.T, s store.Store, name string) store.User {
	t.Helper()
	return ret(s.GetUser(context.Background(), name)).must(t, "GetUser(%q)", name)
}

func assertUser(t *testing.T, got, want store.User) {
	t.Helper()
	if got.Name != want.Name || got.Role != want.Role || string(got.Hash) != string(want.Hash) ||
		!got.Created.Equal(want.Created) || !got.Changed.Equal(want.Changed) {
		t.Errorf("user =\n %+v\nwant\n %+v", got, want)
	}
}

func testUsers(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	if _, err := s.GetUser(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetUser on an empty store: err = %v, want ErrNotFound", err)
	}
	if us, err := s.ListUsers(ctx); err != nil || len(us) != 0 {
		t.Fatalf("ListUsers on an empty store = %+v, %v; want none", us, err)
	}

	alice := store.User{Name: "alice", Role: store.RoleAdmin, Hash: hashA, Created: base, Changed: base}
	addUser(t, s, alice)
	assertUser(t, getUser(t, s, "alice"), alice)

	// A second add of the name is refused and changes nothing.
	dup := store.User{Name: "alice", Role: store.RoleViewer, Hash: hashB, Created: base.Add(time.Hour), Changed: base.Add(time.Hour)}
	if err := s.AddUser(ctx, dup); !errors.Is(err, store.ErrExists) {
		t.Fatalf("AddUser of an existing name: err = %v, want ErrExists", err)
	}
	assertUser(t, getUser(t, s, "alice"), alice)

	// Names are exact: another case is another user.
	if _, err := s.GetUser(ctx, "Alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetUser(%q): err = %v, want ErrNotFound", "Alice", err)
	}

	// UpdateUser replaces role, hash and Changed and keeps Created, even
	// when the caller passes another Created.
	upd := store.User{Name: "alice", Role: store.RoleViewer, Hash: hashB, Created: base.Add(5 * time.Hour), Changed: base.Add(2 * time.Hour)}
	if err := s.UpdateUser(ctx, upd); err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	want := upd
	want.Created = base
	assertUser(t, getUser(t, s, "alice"), want)

	if err := s.UpdateUser(ctx, store.User{Name: "bob", Role: store.RoleAdmin, Hash: hashA, Changed: base}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateUser of a missing user: err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetUser(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateUser of a missing user created it: GetUser err = %v", err)
	}

	if err := s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if _, err := s.GetUser(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetUser after DeleteUser: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteUser(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteUser of a missing user: err = %v, want ErrNotFound", err)
	}
	// The name is free again.
	addUser(t, s, alice)
	assertUser(t, getUser(t, s, "alice"), alice)
}

func testListUsers(t *testing.T, s store.Store) {
	base := baseTime()
	names := []string{"mallory", "Bob", "alice", "bob.smith@example.org", "carol"}
	want := map[string]store.User{}
	for i, n := range names {
		u := store.User{Name: n, Role: store.RoleViewer, Hash: hashA, Created: base.Add(time.Duration(i) * time.Minute),
			Changed: base.Add(time.Duration(i) * time.Hour)}
		if i%2 == 0 {
			u.Role, u.Hash = store.RoleAdmin, hashB
		}
		addUser(t, s, u)
		want[n] = u
	}
	got, err := s.ListUsers(context.Background())
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	order := []string{"Bob", "alice", "bob.smith@example.org", "carol", "mallory"} // byte order
	if len(got) != len(order) {
		t.Fatalf("ListUsers returned %d users, want %d: %+v", len(got), len(order), got)
	}
	for i, n := range order {
		if got[i].Name != n {
			t.Fatalf("ListUsers order: #%d is %q, want %q", i, got[i].Name, n)
		}
		assertUser(t, got[i], want[n])
	}
}

// RunTwoHandles checks what the daemon and the CLI, each with its own
// store on the same directory, rely on: a change made through second
// (the CLI's) shows through first (the daemon's) on the very next call.
// Only backends that persist to a directory use it.
func RunTwoHandles(t *testing.T, first, second func(t *testing.T, dir string) store.Store) {
	t.Helper()
	t.Run("UserChangesSeenAtOnce", func(t *testing.T) {
		dir := t.TempDir()
		ctx := context.Background()
		base := baseTime()
		daemon := first(t, dir)
		defer daemon.Close()
		cli := second(t, dir)
		defer cli.Close()

		alice := store.User{Name: "alice", Role: store.RoleAdmin, Hash: hashA, Created: base, Changed: base}
		addUser(t, cli, alice)
		assertUser(t, getUser(t, daemon, "alice"), alice)

		demoted := store.User{Name: "alice", Role: store.RoleViewer, Hash: hashB, Changed: base.Add(time.Minute)}
		if err := cli.UpdateUser(ctx, demoted); err != nil {
			t.Fatalf("UpdateUser through the second store: %v", err)
		}
		demoted.Created = base
		assertUser(t, getUser(t, daemon, "alice"), demoted)

		if err := cli.DeleteUser(ctx, "alice"); err != nil {
			t.Fatalf("DeleteUser through the second store: %v", err)
		}
		if u, err := daemon.GetUser(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetUser right after another store deleted the user = %+v, %v; want ErrNotFound", u, err)
		}
		if us, err := daemon.ListUsers(ctx); err != nil || len(us) != 0 {
			t.Fatalf("ListUsers right after another store deleted the user = %+v, %v; want none", us, err)
		}
		// And the other way round: the daemon's own add is seen by the CLI.
		addUser(t, daemon, alice)
		assertUser(t, getUser(t, cli, "alice"), alice)
	})
}

// usersBeforeClose adds a user for RunReopen and returns the check to
// run after the reopen.
func usersBeforeClose(t *testing.T, s store.Store, base time.Time) func(t *testing.T, s store.Store) {
	t.Helper()
	u := store.User{Name: "alice", Role: store.RoleAdmin, Hash: hashA, Created: base, Changed: base.Add(time.Minute)}
	addUser(t, s, u)
	return func(t *testing.T, s store.Store) {
		t.Helper()
		assertUser(t, getUser(t, s, "alice"), u)
	}
}
