package sqlite

import (
	"context"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// TestUsersInvalid checks that records the dashboard could not use are
// refused rather than stored: the CLI validates names and passwords, the
// store keeps a bug elsewhere from writing a user nobody can log in as,
// or one with a role the dashboard does not know.
func TestUsersInvalid(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	hash := []byte("$2a$11$not-checked-by-the-store")
	for _, u := range []store.User{
		{Name: "", Role: store.RoleAdmin, Hash: hash, Created: now},
		{Name: "eve", Role: "root", Hash: hash, Created: now},
		{Name: "eve", Role: store.RoleAdmin, Created: now},
		{Name: "eve", Role: store.RoleAdmin, Hash: hash},
	} {
		if err := s.AddUser(ctx, u); err == nil {
			t.Errorf("AddUser(%+v) accepted", u)
		}
	}
	if us, err := s.ListUsers(ctx); err != nil || len(us) != 0 {
		t.Fatalf("ListUsers after refused adds = %+v, %v; want none", us, err)
	}
	if err := s.AddUser(ctx, store.User{Name: "eve", Role: store.RoleViewer, Hash: hash, Created: now}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []store.User{
		{Name: "eve", Role: "root", Hash: hash, Changed: now},
		{Name: "eve", Role: store.RoleAdmin, Changed: now},
		{Name: "eve", Role: store.RoleAdmin, Hash: hash},
	} {
		if err := s.UpdateUser(ctx, u); err == nil {
			t.Errorf("UpdateUser(%+v) accepted", u)
		}
	}
	// A zero Changed on add is stored as Created.
	u, err := s.GetUser(ctx, "eve")
	if err != nil || u.Role != store.RoleViewer || !u.Changed.Equal(now) {
		t.Fatalf("eve after refused updates = %+v, %v", u, err)
	}
}
