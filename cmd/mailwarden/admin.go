package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/daemon"
)

// adminTimeout bounds one admin command's conversation with the daemon.
const adminTimeout = 30 * time.Second

// adminCmd is what the commands that talk to the running daemon share:
// how to find its socket, --json, and how to report failures.
type adminCmd struct {
	name       string // "latch clear", for messages
	configPath *string
	dataDir    *string
	asJSON     *bool
	stdout     io.Writer
	stderr     io.Writer
}

// newAdminCmd registers the flags every admin command takes.
func newAdminCmd(name string, fs *flag.FlagSet, stdout, stderr io.Writer) *adminCmd {
	return &adminCmd{
		name:       name,
		configPath: fs.String("config", "", "config `file` of the running daemon (to find admin.socket)"),
		dataDir:    fs.String("data", "", "data `directory` of the running daemon (admin.sock is in it)"),
		asJSON:     fs.Bool("json", false, "print JSON instead of a table"),
		stdout:     stdout,
		stderr:     stderr,
	}
}

// client loads the daemon's config to find the admin socket, as serve
// would, and returns a client for it. A config error is exit status 2.
func (a *adminCmd) client() (*adminapi.Client, int) {
	cfg, err := daemon.LoadConfig(*a.configPath, *a.dataDir)
	if err != nil {
		fmt.Fprintf(a.stderr, "mailwarden %s: %v\n", a.name, err)
		return nil, 2
	}
	return adminapi.Dial(adminapi.SocketPath(cfg)), 0
}

// usage reports a command-line mistake: exit status 2.
// connect returns the daemon's client and a context bounding one
// command; done releases both. A nil client means the command is over
// with the exit status code (the error is already printed).
func (a *adminCmd) connect() (c *adminapi.Client, ctx context.Context, done func(), code int) {
	c, code = a.client()
	if c == nil {
		return nil, nil, nil, code
	}
	ctx, cancel := adminContext()
	return c, ctx, func() { cancel(); c.Close() }, 0
}

func (a *adminCmd) usage(format string, args ...any) int {
	fmt.Fprintf(a.stderr, "mailwarden %s: %s\n", a.name, fmt.Sprintf(format, args...))
	return 2
}

// fail reports an error from the daemon: input it refused is a usage
// error (2), anything else a failure (1).
func (a *adminCmd) fail(err error) int {
	fmt.Fprintf(a.stderr, "mailwarden %s: %v\n", a.name, err)
	if adminapi.BadInput(err) {
		return 2
	}
	return 1
}

// json prints v as JSON.
func (a *adminCmd) json(v any) int { return writeJSON(a.stdout, a.stderr, v) }

func adminContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), adminTimeout)
}

// localTime prints t in local time, or "-" when it is not set.
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// when prints t in local time with how long ago (or how far ahead) it is.
func when(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		return localTime(t) + " (in " + humanDuration(-d) + ")"
	}
	return localTime(t) + " (" + humanDuration(d) + " ago)"
}

// humanDuration rounds d to its two largest units: "45s", "2h5m", "3d4h".
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		m, s := d/time.Minute, d%time.Minute/time.Second
		return twoUnits(int(m), "m", int(s), "s")
	case d < 24*time.Hour:
		h, m := d/time.Hour, d%time.Hour/time.Minute
		return twoUnits(int(h), "h", int(m), "m")
	}
	days, h := d/(24*time.Hour), d%(24*time.Hour)/time.Hour
	return twoUnits(int(days), "d", int(h), "h")
}

func twoUnits(a int, ua string, b int, ub string) string {
	if b == 0 {
		return strconv.Itoa(a) + ua
	}
	return strconv.Itoa(a) + ua + strconv.Itoa(b) + ub
}

// printableText is printable for free text in the last column of a table
// or a detail line: spaces are fine there, but control and other
// invisible characters (terminal escapes, bidi overrides) are quoted.
func printableText(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }) >= 0 {
		return strconv.QuoteToASCII(s)
	}
	return s
}

// orDash shows an empty table cell as "-" so columns stay aligned.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
