// Package account checks and hashes dashboard user names and passwords,
// for the "mailwarden user" commands and the web login alike.
package account

import (
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"mailwarden/internal/store"
)

// Password length bounds. bcrypt reads at most 72 bytes, so a longer
// password would silently be truncated; it is refused instead.
const (
	MinPassword = 10
	MaxPassword = 72
	maxName     = 64
)

// Cost is the bcrypt work factor: about 50-100 ms per login on the
// machines small sites run, cheap for a person and dear for a guesser.
const Cost = 11

// ErrBadPassword is the answer to a wrong password.
var ErrBadPassword = errors.New("account: wrong user name or password")

// ValidName checks a user name: 1-64 of letters, digits and . _ @ -.
func ValidName(name string) error {
	if name == "" || len(name) > maxName {
		return fmt.Errorf("user name must be 1 to %d characters, got %d", maxName, len(name))
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == '@' || r == '-'
		if !ok {
			return fmt.Errorf("user name %q: only letters, digits and . _ @ - are allowed", name)
		}
	}
	return nil
}

// ValidRole checks a role name.
func ValidRole(role string) error {
	if role != store.RoleViewer && role != store.RoleAdmin {
		return fmt.Errorf("role %q: want %s or %s", role, store.RoleViewer, store.RoleAdmin)
	}
	return nil
}

// ValidPassword checks a new password's length.
func ValidPassword(pw string) error {
	n := utf8.RuneCountInString(pw)
	switch {
	case n < MinPassword:
		return fmt.Errorf("password must be at least %d characters", MinPassword)
	case len(pw) > MaxPassword:
		return fmt.Errorf("password must be at most %d bytes (bcrypt ignores the rest)", MaxPassword)
	}
	return nil
}

// Hash returns the bcrypt hash of a valid password.
func Hash(pw string) ([]byte, error) {
	if err := ValidPassword(pw); err != nil {
		return nil, err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), Cost)
	if err != nil {
		return nil, fmt.Errorf("account: hashing the password: %w", err)
	}
	return h, nil
}

// Check compares pw with hash, returning ErrBadPassword on a mismatch.
func Check(hash []byte, pw string) error {
	if len(pw) > MaxPassword {
		return ErrBadPassword
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(pw)); err != nil {
		return ErrBadPassword
	}
	return nil
}

// dummyHash is compared against when a login names no known user, so
// that an unknown name takes as long to refuse as a wrong password and
// timing does not tell which user names exist.
// It is made on first use so that commands that never check a password
// do not pay for it.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("mailwarden-no-such-user"), Cost)
	return h
})

// CheckMissing spends the time of one Check and returns ErrBadPassword.
func CheckMissing(pw string) error {
	_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(pw))
	return ErrBadPassword
}
