package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrExists is returned when creating a record whose key is taken.
var ErrExists = errors.New("store: already exists")

// Dashboard roles: a viewer reads everything, an admin also changes
// things (clears latches, freezes, disinfects hosts).
const (
	RoleViewer = "viewer"
	RoleAdmin  = "admin"
)

// User is a dashboard user. Hash is a bcrypt hash; the password itself
// is never stored.
type User struct {
	Name    string
	Role    string // RoleViewer or RoleAdmin
	Hash    []byte
	Created time.Time
	Changed time.Time // last change of password or role
}

// Check reports what makes u unfit to store, so that every backend
// refuses the same users: a name, a known role and a password hash are
// required.
func (u User) Check() error {
	if u.Name == "" {
		return errors.New("name must be set")
	}
	if u.Role != RoleViewer && u.Role != RoleAdmin {
		return fmt.Errorf("role %q is neither %s nor %s", u.Role, RoleViewer, RoleAdmin)
	}
	if len(u.Hash) == 0 {
		return errors.New("password hash must be set")
	}
	return nil
}

// Users keeps the dashboard's users. Reads see changes made by another
// process (the CLI) at once: a deleted user must lose access on their
// next request.
type Users interface {
	// AddUser stores a new user, or returns ErrExists.
	AddUser(ctx context.Context, u User) error
	// UpdateUser replaces the role, hash and Changed of the user named
	// u.Name, keeping Created, or returns ErrNotFound.
	UpdateUser(ctx context.Context, u User) error
	// GetUser returns the user named name, or ErrNotFound.
	GetUser(ctx context.Context, name string) (User, error)
	// DeleteUser removes the user named name, or returns ErrNotFound.
	DeleteUser(ctx context.Context, name string) error
	// ListUsers returns every user, by name.
	ListUsers(ctx context.Context) ([]User, error)
}

// ClientPass is a client's unexpired greylist pass count.
type ClientPass struct {
	Client  string // netblock as text
	Passes  int
	Expires time.Time
}

// ClientPassLister lists the clients that greylisting has auto-whitelisted.
type ClientPassLister interface {
	// ListClientPasses returns the unexpired pass records with at least
	// minPasses passes, most passes first, at most limit (0: all).
	ListClientPasses(ctx context.Context, now time.Time, minPasses, limit int) ([]ClientPass, error)
}
