package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"mailwarden/internal/account"
	"mailwarden/internal/store/sqlite"
	"mailwarden/test/harness"
)

// userCLI runs `mailwarden user VERB --config … --data … ARGS` with
// stdin as its standard input (the harness's CLI gives it none).
func userCLI(t *testing.T, mw *harness.Mailwarden, stdin string, verb string, args ...string) harness.CLIResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"user", verb, "--config", mw.ConfigFile, "--data", mw.DataDir}, args...)
	cmd := exec.CommandContext(ctx, built.bin, full...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := harness.CLIResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("mailwarden %s: no result within 30s", strings.Join(full, " "))
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("running mailwarden %s: %v", strings.Join(full, " "), err)
	}
	return res
}

type listedUser struct {
	Name, Role       string
	Created, Changed time.Time
}

func listUsers(t *testing.T, mw *harness.Mailwarden) []listedUser {
	t.Helper()
	res := userCLI(t, mw, "", "list", "--json")
	var us []listedUser
	if err := json.Unmarshal([]byte(res.Stdout), &us); res.ExitCode != 0 || err != nil {
		t.Fatalf("user list --json: exit %d, %v\nstdout:\n%s\nstderr:\n%s", res.ExitCode, err, res.Stdout, res.Stderr)
	}
	return us
}

// TestUserCLI manages dashboard users while the daemon runs, as an
// administrator would, and checks the refusals an operator can meet.
func TestUserCLI(t *testing.T) {
	t.Parallel()
	mw := harness.StartMailwarden(t, binary(t), "")
	const pw, pw2 = "correct horse battery", "another long secret"

	res := userCLI(t, mw, pw+"\n", "add", "--role", "admin", "--password-stdin", "alice")
	if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "added dashboard user alice (admin)" {
		t.Fatalf("user add: exit %d\nstdout:\n%s\nstderr:\n%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	if res := userCLI(t, mw, pw+"\r\n", "add", "bob", "--password-stdin"); res.ExitCode != 0 {
		t.Fatalf("user add bob: exit %d, stderr %s", res.ExitCode, res.Stderr)
	}
	requirePassword(t, mw, "alice", pw)
	requirePassword(t, mw, "bob", pw) // \r\n is a line end, not part of it

	res = userCLI(t, mw, "", "list")
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if res.ExitCode != 0 || len(lines) != 3 || strings.Fields(lines[0])[0] != "NAME" ||
		strings.Join(strings.Fields(lines[1])[:2], " ") != "alice admin" ||
		strings.Join(strings.Fields(lines[2])[:2], " ") != "bob viewer" {
		t.Fatalf("user list: exit %d, want a header and alice admin, bob viewer:\n%s", res.ExitCode, res.Stdout)
	}
	before := listUsers(t, mw)

	time.Sleep(5 * time.Millisecond)
	if res := userCLI(t, mw, pw2, "passwd", "--password-stdin", "alice"); res.ExitCode != 0 ||
		!strings.Contains(res.Stdout, "changed the password of dashboard user alice") {
		t.Fatalf("user passwd: exit %d\nstdout:\n%s\nstderr:\n%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	requirePassword(t, mw, "alice", pw2)
	after := listUsers(t, mw)
	if len(after) != 2 || !after[0].Created.Equal(before[0].Created) || !after[0].Changed.After(before[0].Changed) {
		t.Errorf("after passwd: %+v, before %+v; want the same created and a later changed", after, before)
	}

	for _, tc := range []struct {
		name, stdin string
		args        []string
		code        int
		stderr      string
	}{
		{"short password", "short\n", []string{"add", "--password-stdin", "carol"}, 2, "at least 10"},
		{"bad name", pw, []string{"add", "--password-stdin", "carol smith"}, 2, "only letters, digits"},
		{"bad role", pw, []string{"add", "--password-stdin", "--role", "root", "carol"}, 2, `role "root"`},
		{"duplicate", pw, []string{"add", "--password-stdin", "alice"}, 1, "already exists"},
		{"no terminal", pw, []string{"add", "carol"}, 2, "not a terminal"},
		{"passwd missing user", pw, []string{"passwd", "--password-stdin", "carol"}, 1, "not found"},
		{"del missing user", "", []string{"del", "carol"}, 1, "not found"},
		{"unknown verb", "", []string{"rename", "alice"}, 2, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := userCLI(t, mw, tc.stdin, tc.args[0], tc.args[1:]...)
			if res.ExitCode != tc.code || !strings.Contains(res.Stderr, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", res.ExitCode, res.Stderr, tc.code, tc.stderr)
			}
			if strings.Contains(res.Stdout+res.Stderr, pw) {
				t.Errorf("the output shows the password:\n%s\n%s", res.Stdout, res.Stderr)
			}
		})
	}
	if us := listUsers(t, mw); len(us) != 2 {
		t.Errorf("after the refused commands, users = %+v; want alice and bob only", us)
	}

	if res := userCLI(t, mw, "", "role", "bob", "admin"); res.ExitCode != 0 ||
		!strings.Contains(res.Stdout, "from viewer to admin") {
		t.Errorf("user role: exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	if res := userCLI(t, mw, "", "del", "alice"); res.ExitCode != 0 ||
		strings.TrimSpace(res.Stdout) != "deleted dashboard user alice (admin)" {
		t.Errorf("user del: exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	if us := listUsers(t, mw); len(us) != 1 || us[0].Name != "bob" || us[0].Role != "admin" {
		t.Errorf("after del, users = %+v; want bob (admin) only", us)
	}

	// The running daemon serves the audit log: every change is there,
	// naming the system user who ran the command (root here).
	res = mw.CLIWords(t, 1, "events", "--kind", "admin", "--json")
	var evs []struct{ Check, User, Reason string }
	if err := json.Unmarshal([]byte(res.Stdout), &evs); res.ExitCode != 0 || err != nil {
		t.Fatalf("events --kind admin: exit %d, %v\n%s\n%s", res.ExitCode, err, res.Stdout, res.Stderr)
	}
	var got []string
	for _, ev := range evs {
		got = append(got, ev.Check+": "+ev.Reason)
		if ev.User != "root" {
			t.Errorf("admin event %+v names %q, want root", ev, ev.User)
		}
	}
	want := []string{
		"user del: deleted dashboard user alice (admin)",
		"user role: changed the role of dashboard user bob from viewer to admin",
		"user passwd: changed the password of dashboard user alice",
		"user add: added dashboard user bob (viewer)",
		"user add: added dashboard user alice (admin)",
		// The harness made the store, as an administrator does once.
		"store init: created store " + storeID(t, mw) + " in " + mw.DataDir,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("admin events, newest first:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !mw.Running() {
		t.Error("the daemon stopped while users were managed beside it")
	}
}

// TestUserPasswordPrompt types the password on a terminal (a pseudo
// terminal the test holds): asked twice, a mismatch is refused, a match
// is stored.
func TestUserPasswordPrompt(t *testing.T) {
	t.Parallel()
	mw := harness.NewMailwarden(t, binary(t), "") // the daemon need not run
	const pw = "typed on a terminal"

	res := promptUser(t, mw, []string{pw, pw + "x"}, "add", "dave")
	if res.ExitCode != 1 || !strings.Contains(res.Stderr, "differ") {
		t.Fatalf("mismatched passwords: exit %d, stderr %q", res.ExitCode, res.Stderr)
	}
	if us := listUsers(t, mw); len(us) != 0 {
		t.Fatalf("a refused prompt stored %+v", us)
	}
	res = promptUser(t, mw, []string{pw, pw}, "add", "--role", "admin", "dave")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "added dashboard user dave (admin)") {
		t.Fatalf("prompted add: exit %d\nstdout:\n%s\nstderr:\n%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	if strings.Contains(res.Stdout+res.Stderr, pw) {
		t.Errorf("the output shows the password:\n%s\n%s", res.Stdout, res.Stderr)
	}
	requirePassword(t, mw, "dave", pw)
	const pw2 = "brand new password"
	res = promptUser(t, mw, []string{pw2, pw2}, "passwd", "dave")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "changed the password of dashboard user dave") {
		t.Fatalf("prompted passwd: exit %d\nstdout:\n%s\nstderr:\n%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	requirePassword(t, mw, "dave", pw2)
}

// requirePassword checks, as the dashboard's login will, that the store
// holds exactly pw as name's password: no line end or prompt text
// crept in.
func requirePassword(t *testing.T, mw *harness.Mailwarden, name, pw string) {
	t.Helper()
	st, err := sqlite.Open(mw.DataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.GetUser(context.Background(), name)
	if err != nil {
		t.Fatalf("reading user %s from the store: %v", name, err)
	}
	if err := account.Check(u.Hash, pw); err != nil {
		t.Errorf("stored password of %s is not %q: %v", name, pw, err)
	}
}

// onPTY is a user command running with a pseudo terminal as its
// standard input.
type onPTY struct {
	cmd    *exec.Cmd
	ptm    *os.File
	stdout bytes.Buffer
	stderr strings.Builder
	errR   *bufio.Reader
	cancel context.CancelFunc
}

func startOnPTY(t *testing.T, mw *harness.Mailwarden, verb string, args ...string) *onPTY {
	t.Helper()
	ptm, pts := openPTY(t)
	t.Cleanup(func() { ptm.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	full := append([]string{"user", verb, "--config", mw.ConfigFile, "--data", mw.DataDir}, args...)
	p := &onPTY{cmd: exec.CommandContext(ctx, built.bin, full...), ptm: ptm, cancel: cancel}
	p.cmd.Stdin = pts
	p.cmd.Stdout = &p.stdout
	stderrR, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.errR = bufio.NewReader(stderrR)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting mailwarden %s: %v", strings.Join(full, " "), err)
	}
	pts.Close() // the child holds its own copy
	// Whatever the terminal echoes is drained, so the child never blocks
	// on a full terminal buffer.
	go io.Copy(io.Discard, ptm)
	return p
}

// waitPrompt reads standard error up to the next password prompt, which
// ends with ": " and no newline.
func (p *onPTY) waitPrompt(t *testing.T) {
	t.Helper()
	var line []byte
	for !bytes.HasSuffix(line, []byte(": ")) {
		b, err := p.errR.ReadByte()
		if err != nil {
			t.Fatalf("waiting for a password prompt: %v; got %q", err, p.stderr.String()+string(line))
		}
		line = append(line, b)
	}
	p.stderr.Write(line)
}

// wait returns the command's outcome once it has exited.
func (p *onPTY) wait(t *testing.T) harness.CLIResult {
	t.Helper()
	rest, _ := io.ReadAll(p.errR)
	p.stderr.Write(rest)
	err := p.cmd.Wait()
	res := harness.CLIResult{Stdout: p.stdout.String(), Stderr: p.stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		res.ExitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("running mailwarden user: %v (killed after 30s?)", err)
	}
	return res
}

// promptUser runs a user command on a pseudo terminal, answering each
// password prompt with the next of answers.
func promptUser(t *testing.T, mw *harness.Mailwarden, answers []string, verb string, args ...string) harness.CLIResult {
	t.Helper()
	p := startOnPTY(t, mw, verb, args...)
	for _, a := range answers {
		p.waitPrompt(t)
		if _, err := fmt.Fprintf(p.ptm, "%s\n", a); err != nil {
			t.Fatalf("typing the password: %v", err)
		}
	}
	return p.wait(t)
}

// TestUserPromptInterrupted presses Ctrl-C at the password prompt: the
// command stops, stores nothing, and leaves the terminal echoing again.
func TestUserPromptInterrupted(t *testing.T) {
	t.Parallel()
	mw := harness.NewMailwarden(t, binary(t), "")
	p := startOnPTY(t, mw, "add", "erin")
	p.waitPrompt(t)
	// The prompt is written just before echo goes off; wait for that.
	deadline := time.Now().Add(5 * time.Second)
	for echoOn(t, p.ptm) {
		if time.Now().After(deadline) {
			t.Fatal("echo still on 5s after the password prompt")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	res := p.wait(t)
	if res.ExitCode != 130 {
		t.Errorf("interrupted prompt: exit %d, want 130; stderr %q", res.ExitCode, res.Stderr)
	}
	if !echoOn(t, p.ptm) {
		t.Error("the interrupted prompt left the terminal without echo")
	}
	if us := listUsers(t, mw); len(us) != 0 {
		t.Errorf("an interrupted add stored %+v", us)
	}
}

// echoOn reads the terminal's ECHO flag through its master side, which
// shares the termios of the other end on Linux.
func echoOn(t *testing.T, ptm *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(ptm.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatalf("reading the terminal settings: %v", err)
	}
	return tio.Lflag&unix.ECHO != 0
}

// openPTY opens a Linux pseudo terminal pair (pty(7)).
func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		harness.SkipOrFail(t, "no pseudo terminals here: %v", err)
	}
	fd := int(ptm.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		ptm.Close()
		t.Fatalf("unlocking the pseudo terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		ptm.Close()
		t.Fatalf("numbering the pseudo terminal: %v", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ptm.Close()
		t.Fatalf("opening the pseudo terminal's other end: %v", err)
	}
	return ptm, pts
}

// storeID reads the identity of mw's store from its marker file.
func storeID(t *testing.T, mw *harness.Mailwarden) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mw.DataDir, "mailwarden.store"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		t.Fatalf("store marker %q", b)
	}
	return f[2]
}
