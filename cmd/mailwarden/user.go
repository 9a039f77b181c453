package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"mailwarden/internal/account"
	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

// userTimeout bounds the store work of one user command; the password
// prompt comes before it and has no bound.
const userTimeout = 30 * time.Second

// maxPasswordLine bounds what --password-stdin reads, so that a file
// piped in by mistake is refused instead of read whole.
const maxPasswordLine = 4096

// userCmd runs one `mailwarden user` command. in is the standard input;
// when it is a terminal, passwords are prompted for without echo.
type userCmd struct {
	verb   string
	in     io.Reader
	stdout io.Writer
	stderr io.Writer
	// who names the administrator for the admin event.
	who func() string
}

// cmdUser manages the dashboard's users, straight in the store: it
// works whether the daemon runs or not, and the daemon sees each change
// on its next request.
func cmdUser(args []string, stdout, stderr io.Writer) int {
	return runUser(args, os.Stdin, stdout, stderr, osUser)
}

func runUser(args []string, in io.Reader, stdout, stderr io.Writer, who func() string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "usage: mailwarden user add|passwd|role|del|list [--config FILE] [--data DIR] ...\n")
		return 2
	}
	u := &userCmd{verb: args[0], in: in, stdout: stdout, stderr: stderr, who: who}
	fs := flag.NewFlagSet("user "+u.verb, flag.ContinueOnError)
	configPath := fs.String("config", "", "config `file` (default: built-in defaults)")
	dataDir := fs.String("data", "", "data `directory` (overrides data_dir)")
	var role *string
	var fromStdin, asJSON *bool
	var want int
	var wantText string
	switch u.verb {
	case "add":
		role = fs.String("role", store.RoleViewer, "the user's `role`: viewer (reads everything) or admin (also changes things)")
		fromStdin = fs.Bool("password-stdin", false, "read the password from the first line of standard input")
		want, wantText = 1, "NAME"
	case "passwd":
		fromStdin = fs.Bool("password-stdin", false, "read the password from the first line of standard input")
		want, wantText = 1, "NAME"
	case "role":
		want, wantText = 2, "NAME viewer|admin"
	case "del":
		want, wantText = 1, "NAME"
	case "list":
		asJSON = fs.Bool("json", false, "print JSON instead of a table")
		want, wantText = 0, "no arguments"
	default:
		fmt.Fprintf(stderr, "mailwarden user: unknown command %q (want add, passwd, role, del or list)\n", u.verb)
		return 2
	}
	pos, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return 2
	}
	if err := wantArgs(pos, want, wantText); err != nil {
		return u.usage("%v", err)
	}
	if want > 0 {
		if err := account.ValidName(pos[0]); err != nil {
			return u.usage("%v", err)
		}
	}
	if role != nil {
		if err := account.ValidRole(*role); err != nil {
			return u.usage("--role: %v", err)
		}
	}
	if u.verb == "role" {
		if err := account.ValidRole(pos[1]); err != nil {
			return u.usage("%v", err)
		}
	}
	cfg, err := daemon.LoadConfig(*configPath, *dataDir)
	if err != nil {
		return u.usage("%v", err)
	}
	st, err := sqlite.Open(cfg.DataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		return u.fail(err)
	}
	defer st.Close()
	switch u.verb {
	case "add":
		return u.add(st, cfg, pos[0], *role, *fromStdin)
	case "passwd":
		return u.passwd(st, cfg, pos[0], *fromStdin)
	case "role":
		return u.setRole(st, cfg, pos[0], pos[1])
	case "del":
		return u.del(st, cfg, pos[0])
	default:
		return u.list(st, *asJSON)
	}
}

func (u *userCmd) add(st store.Store, cfg config.Config, name, role string, fromStdin bool) int {
	// Refuse a taken name before asking for a password; AddUser still
	// refuses it if another command adds it meanwhile.
	if code := u.exists(st, name, false); code != 0 {
		return code
	}
	hash, code := u.newPassword(name, fromStdin)
	if code != 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), userTimeout)
	defer cancel()
	now := time.Now()
	err := st.AddUser(ctx, store.User{Name: name, Role: role, Hash: hash, Created: now, Changed: now})
	if err != nil {
		return u.fail(err)
	}
	return u.done(ctx, st, cfg, now, fmt.Sprintf("added dashboard user %s (%s)", name, role))
}

func (u *userCmd) passwd(st store.Store, cfg config.Config, name string, fromStdin bool) int {
	if code := u.exists(st, name, true); code != 0 {
		return code
	}
	hash, code := u.newPassword(name, fromStdin)
	if code != 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), userTimeout)
	defer cancel()
	cur, err := st.GetUser(ctx, name)
	if err != nil {
		return u.fail(err)
	}
	now := time.Now()
	cur.Hash, cur.Changed = hash, now
	if err := st.UpdateUser(ctx, cur); err != nil {
		return u.fail(err)
	}
	return u.done(ctx, st, cfg, now, "changed the password of dashboard user "+name)
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
	now := time.Now()
	cur.Role, cur.Changed = role, now
	if err := st.UpdateUser(ctx, cur); err != nil {
		return u.fail(err)
	}
	return u.done(ctx, st, cfg, now, fmt.Sprintf("changed the role of dashboard user %s from %s to %s", name, old, role))
}

func (u *userCmd) del(st store.Store, cfg config.Config, name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), userTimeout)
	defer cancel()
	cur, err := st.GetUser(ctx, name)
	if err != nil {
		return u.fail(err)
	}
	if err := st.DeleteUser(ctx, name); err != nil {
		return u.fail(err)
	}
	return u.done(ctx, st, cfg, time.Now(), fmt.Sprintf("deleted dashboard user %s (%s)", name, cur.Role))
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
	tw := tabwriter.NewWriter(u.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tCHANGED")
	for _, x := range us {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", printable(x.Name), printable(x.Role), localTime(x.Created), localTime(x.Changed))
	}
	tw.Flush()
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

// done records the change as an admin event, so the dashboard's audit
// log shows who made it, and reports it. The change is made by then:
// if the event cannot be recorded, the message says so.
func (u *userCmd) done(ctx context.Context, st store.Store, cfg config.Config, now time.Time, what string) int {
	ev := store.Event{Time: now, Kind: store.EventAdmin, Check: "user " + u.verb, User: u.who(),
		Reason: what, Expires: now.Add(cfg.Events.Retention.D())}
	if err := st.AppendEvents(ctx, ev); err != nil {
		fmt.Fprintf(u.stderr, "mailwarden user %s: %s, but recording the admin event failed: %v\n", u.verb, what, err)
		return 1
	}
	fmt.Fprintln(u.stdout, what)
	return 0
}

// newPassword reads and hashes the new password of name.
func (u *userCmd) newPassword(name string, fromStdin bool) ([]byte, int) {
	var pw string
	var err error
	switch {
	case fromStdin:
		pw, err = readPasswordLine(u.in)
	case isTerminal(u.in):
		pw, err = promptPassword(u.in.(*os.File), u.stderr, name)
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

func (u *userCmd) usage(format string, args ...any) int {
	fmt.Fprintf(u.stderr, "mailwarden user %s: %s\n", u.verb, fmt.Sprintf(format, args...))
	return 2
}

func (u *userCmd) fail(err error) int {
	fmt.Fprintf(u.stderr, "mailwarden user %s: %v\n", u.verb, err)
	return 1
}

// osUser names the operating-system user running the command, as the
// admin socket names the peer: the user name, else "uid N".
func osUser() string {
	if cu, err := user.Current(); err == nil && cu.Username != "" {
		return cu.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}
