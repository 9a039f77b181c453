package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/account"
	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
	"mailwarden/internal/store"
	"mailwarden/internal/store/backend"
)

// userTimeout bounds the store work of one user command; the password
// prompt comes before it and has no bound.
const userTimeout = 30 * time.Second

// maxPasswordLine bounds what --password-stdin reads, so that a file
// piped in by mistake is refused instead of read whole.
const maxPasswordLine = 4096

// userCmd runs one `mailwarden user` command. They manage the
// dashboard's users straight in the store: they work whether the daemon
// runs or not, and the daemon sees each change on its next request.
// When standard input is a terminal, passwords are prompted for without
// echo.
type userCmd struct {
	*call
	configPath, dataDir *string
}

func newUserCmd(fs *flag.FlagSet) *userCmd {
	u := &userCmd{}
	u.configPath, u.dataDir = configFlags(fs)
	return u
}

func passwordStdinFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("password-stdin", false, "read the password from the first line of standard input")
}

func userAdd(fs *flag.FlagSet) runFunc {
	u := newUserCmd(fs)
	role := fs.String("role", store.RoleViewer, "the user's `role`: viewer (reads everything) or admin (also changes things)")
	fromStdin := passwordStdinFlag(fs)
	return func(c *call) int {
		if err := account.ValidRole(*role); err != nil {
			return c.usage("--role: %v", err)
		}
		return u.run(c, func(st store.Store, cfg config.Config) int { return u.add(st, cfg, c.pos[0], *role, *fromStdin) })
	}
}

func userPasswd(fs *flag.FlagSet) runFunc {
	u := newUserCmd(fs)
	fromStdin := passwordStdinFlag(fs)
	return func(c *call) int {
		return u.run(c, func(st store.Store, cfg config.Config) int { return u.passwd(st, cfg, c.pos[0], *fromStdin) })
	}
}

func userRole(fs *flag.FlagSet) runFunc {
	u := newUserCmd(fs)
	return func(c *call) int {
		if err := account.ValidRole(c.pos[1]); err != nil {
			return c.usage("%v", err)
		}
		return u.run(c, func(st store.Store, cfg config.Config) int { return u.setRole(st, cfg, c.pos[0], c.pos[1]) })
	}
}

func userDel(fs *flag.FlagSet) runFunc {
	u := newUserCmd(fs)
	return func(c *call) int {
		return u.run(c, func(st store.Store, cfg config.Config) int { return u.del(st, cfg, c.pos[0]) })
	}
}

func userList(fs *flag.FlagSet) runFunc {
	u := newUserCmd(fs)
	asJSON := jsonFlag(fs)
	return func(c *call) int {
		return u.run(c, func(st store.Store, _ config.Config) int { return u.list(st, *asJSON) })
	}
}

// run checks the user name (the first argument, if any), opens the
// store and runs f on it.
func (u *userCmd) run(c *call, f func(store.Store, config.Config) int) int {
	u.call = c
	if len(c.pos) > 0 {
		if err := account.ValidName(c.pos[0]); err != nil {
			return u.usage("%v", err)
		}
	}
	cfg, err := daemon.LoadConfig(*u.configPath, *u.dataDir)
	if err != nil {
		return u.usage("%v", err)
	}
	st, err := backend.Open(cfg, backend.Options{})
	if err != nil {
		return u.fail(err)
	}
	defer st.Close()
	return f(st, cfg)
}

func (u *userCmd) add(st store.Store, cfg config.Config, name, role string, fromStdin bool) int {
	// Refuse a taken name before asking for a password; AddUser still
	// refuses it if another command adds it meanwhile.
	hash, code := u.passwordFor(st, name, false, fromStdin)
	if code != 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), userTimeout)
	defer cancel()
	now := time.Now()
	return u.audited(ctx, st, cfg, fmt.Sprintf("added dashboard user %s (%s)", name, role), func(ctx context.Context) error {
		return st.AddUser(ctx, store.User{Name: name, Role: role, Hash: hash, Created: now, Changed: now})
	})
}

// passwordFor checks that the user exists (or, for a new one, does not)
// before asking for a password, and returns its hash.
func (u *userCmd) passwordFor(st store.Store, name string, exists, fromStdin bool) ([]byte, int) {
	if code := u.exists(st, name, exists); code != 0 {
		return nil, code
	}
	return u.newPassword(name, fromStdin)
}

func (u *userCmd) passwd(st store.Store, cfg config.Config, name string, fromStdin bool) int {
	hash, code := u.passwordFor(st, name, true, fromStdin)
	if code != 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), userTimeout)
	defer cancel()
	cur, err := st.GetUser(ctx, name)
	if err != nil {
		return u.fail(err)
	}
	cur.Hash, cur.Changed = hash, time.Now()
	return u.audited(ctx, st, cfg, "changed the password of dashboard user "+name, func(ctx context.Context) error {
		return st.UpdateUser(ctx, cur)
	})
}

func (u *userCmd) setRole(st store.Store, cfg config.Config, name, role string) int {
	ctx, cancel := context.WithTimeout(context.Background(), userTimeout)
	defer cancel()
	cur, err := st.GetUser(ctx, name)
	if err != nil {
		return u.fail(err)
	}
	if cur.Role == role {
		fmt.Fprintf(u.stdout, "dashboard user %s is already %s\n", name, role)
		return 0
	}
	old := cur.Role
	cur.Role, cur.Changed = role, time.Now()
	return u.audited(ctx, st, cfg, fmt.Sprintf("changed the role of dashboard user %s from %s to %s", name, old, role),
		func(ctx context.Context) error { return st.UpdateUser(ctx, cur) })
}

func (u *userCmd) del(st store.Store, cfg config.Config, name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), userTimeout)
	defer cancel()
	cur, err := st.GetUser(ctx, name)
	if err != nil {
		return u.fail(err)
	}
	return u.audited(ctx, st, cfg, fmt.Sprintf("deleted dashboard user %s (%s)", name, cur.Role),
		func(ctx context.Context) error { return st.DeleteUser(ctx, name) })
}

type userJSON struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
	Changed time.Time `json:"changed"`
}

// list shows everything about the users but their hashes.
func (u *userCmd) list(st store.Store, asJSON bool) int {
	ctx, cancel := context.WithTimeout(context.Background(), userTimeout)
	defer cancel()
	us, err := st.ListUsers(ctx)
	if err != nil {
		return u.fail(err)
	}
	if asJSON {
		out := make([]userJSON, 0, len(us))
		for _, x := range us {
			out = append(out, userJSON{x.Name, x.Role, x.Created, x.Changed})
		}
		return writeJSON(u.stdout, u.stderr, out)
	}
	printTable(u.stdout, us, "", "NAME\tROLE\tCREATED\tCHANGED", func(x store.User) []string {
		return []string{printable(x.Name), printable(x.Role), localTime(x.Created), localTime(x.Changed)}
	})
	return 0
}

// exists checks that name is (want) or is not (!want) a user.
func (u *userCmd) exists(st store.Store, name string, want bool) int {
	ctx, cancel := context.WithTimeout(context.Background(), userTimeout)
	defer cancel()
	_, err := st.GetUser(ctx, name)
	switch {
	case err == nil && !want:
		return u.fail(fmt.Errorf("dashboard user %s: %w", name, store.ErrExists))
	case errors.Is(err, store.ErrNotFound) && !want:
		return 0
	case err != nil:
		return u.fail(err)
	}
	return 0
}

// newPassword reads and hashes the new password of name.
func (u *userCmd) newPassword(name string, fromStdin bool) ([]byte, int) {
	var pw string
	var err error
	switch {
	case fromStdin:
		pw, err = readPasswordLine(u.stdin)
	case isTerminal(u.stdin):
		pw, err = promptPassword(u.stdin.(*os.File), u.stderr, name)
	default:
		return nil, u.usage("standard input is not a terminal; give --password-stdin to read the password from it")
	}
	if err != nil {
		return nil, u.fail(err)
	}
	if err := account.ValidPassword(pw); err != nil {
		return nil, u.usage("%v", err)
	}
	hash, err := account.Hash(pw)
	if err != nil {
		return nil, u.fail(err)
	}
	return hash, 0
}

// readPasswordLine reads the first line of r without its line end
// (\n or \r\n); all other characters are part of the password.
func readPasswordLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, maxPasswordLine)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	if !strings.HasSuffix(line, "\n") && len(line) == maxPasswordLine {
		return "", fmt.Errorf("reading the password from standard input: no line end in the first %d bytes", maxPasswordLine)
	}
	if line, ok := strings.CutSuffix(line, "\n"); ok {
		return strings.TrimSuffix(line, "\r"), nil
	}
	return line, nil
}

// osUser names the operating-system user running the command, as the
// admin socket names the peer: the user name, else "uid N".
func osUser() string {
	if cu, err := user.Current(); err == nil && cu.Username != "" {
		return cu.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}
