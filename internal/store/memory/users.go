package memory

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"

	"mailwarden/internal/store"
)

// AddUser stores a new user with the audit ctx carries, or returns
// store.ErrExists. A zero Changed is stored as Created.
func (s *Store) AddUser(ctx context.Context, u store.User) error {
	if err := u.Check(); err != nil {
		return fmt.Errorf("memory: add user %q: %w", u.Name, err)
	}
	if u.Created.IsZero() {
		return fmt.Errorf("memory: add user %q: created time must be set", u.Name)
	}
	if u.Changed.IsZero() {
		u.Changed = u.Created
	}
	if err := s.lock(ctx, "add user"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.users[u.Name]; ok {
		return errf(fmt.Sprintf("add user %q", u.Name), store.ErrExists)
	}
	u.Hash = slices.Clone(u.Hash)
	s.users[u.Name] = u
	s.auditLocked(ctx)
	return nil
}

// UpdateUser replaces the role, hash and Changed of the user u.Name,
// keeping Created, with the audit ctx carries; or returns
// store.ErrNotFound.
func (s *Store) UpdateUser(ctx context.Context, u store.User) error {
	if err := u.Check(); err != nil {
		return fmt.Errorf("memory: update user %q: %w", u.Name, err)
	}
	if u.Changed.IsZero() {
		return fmt.Errorf("memory: update user %q: changed time must be set", u.Name)
	}
	if err := s.lock(ctx, "update user"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	old, ok := s.users[u.Name]
	if !ok {
		return errf(fmt.Sprintf("update user %q", u.Name), store.ErrNotFound)
	}
	old.Role, old.Hash, old.Changed = u.Role, slices.Clone(u.Hash), u.Changed
	s.users[u.Name] = old
	s.auditLocked(ctx)
	return nil
}

// GetUser returns the user named name.
func (s *Store) GetUser(ctx context.Context, name string) (store.User, error) {
	if err := s.lock(ctx, "get user"); err != nil {
		return store.User{}, err
	}
	defer s.mu.Unlock()
	u, ok := s.users[name]
	if !ok {
		return store.User{}, errf(fmt.Sprintf("get user %q", name), store.ErrNotFound)
	}
	u.Hash = slices.Clone(u.Hash)
	return u, nil
}

// DeleteUser removes the user named name with the audit ctx carries, or
// returns store.ErrNotFound.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	if err := s.lock(ctx, "delete user"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.users[name]; !ok {
		return errf(fmt.Sprintf("delete user %q", name), store.ErrNotFound)
	}
	delete(s.users, name)
	s.auditLocked(ctx)
	return nil
}

// ListUsers returns every user, by name.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	if err := s.lock(ctx, "list users"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := slices.SortedFunc(maps.Values(s.users), func(a, b store.User) int { return cmp.Compare(a.Name, b.Name) })
	for i := range out {
		out[i].Hash = slices.Clone(out[i].Hash)
	}
	return out, nil
}
