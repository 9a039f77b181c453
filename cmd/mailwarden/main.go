// Command mailwarden is the mailwarden daemon and its admin tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/daemon"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// env is what a command line runs with.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// who names the operating-system user running the command, for the
	// admin events of commands that work without the daemon.
	who func() string
}

// run runs a command line and returns the exit status: 0 success,
// 1 failure, 2 usage or configuration error.
func run(args []string, stdout, stderr io.Writer) int {
	return runEnv(args, env{stdin: os.Stdin, stdout: stdout, stderr: stderr, who: osUser})
}

func runEnv(args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usageText())
		return 2
	}
	switch args[0] {
	case "help", "--help", "-help", "-h":
		return help(args[1:], e)
	case "--version", "-version":
		args = append([]string{"version"}, args[1:]...)
	}
	cmd, rest := lookup(args)
	if cmd != nil {
		return cmd.run(rest, e)
	}
	if nounCommands(args[0]) == nil {
		return unknown(e.stderr, args[0])
	}
	// A noun without a verb, or with a verb it does not have.
	if len(args) == 1 || strings.HasPrefix(args[1], "-") {
		if isHelpFlag(args[1:]) {
			printNoun(e.stdout, args[0])
			return 0
		}
		printNoun(e.stderr, args[0])
		return 2
	}
	return unknown(e.stderr, args[0]+" "+args[1])
}

// lookup finds the command args start with and returns it with the
// arguments after its name, or nil.
func lookup(args []string) (*command, []string) {
	if len(args) >= 2 {
		if c := find(args[0] + " " + args[1]); c != nil {
			return c, args[2:]
		}
	}
	if c := find(args[0]); c != nil {
		return c, args[1:]
	}
	return nil, nil
}

func find(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// nounCommands returns the commands whose name is noun and a verb.
func nounCommands(noun string) []*command {
	var out []*command
	for i := range commands {
		if c := &commands[i]; c.noun() == noun && c.name != noun {
			out = append(out, c)
		}
	}
	return out
}

func isHelpFlag(args []string) bool {
	return len(args) == 1 && slices.Contains([]string{"-h", "-help", "--help"}, args[0])
}

// help answers "mailwarden help [COMMAND]".
func help(args []string, e env) int {
	name := strings.Join(args, " ")
	switch {
	case name == "" || isHelpFlag(args):
		fmt.Fprint(e.stdout, usageText())
	case find(name) != nil:
		c := find(name)
		fs, _, _ := c.newFlagSet()
		printHelp(e.stdout, c, fs)
	case len(args) == 1 && nounCommands(name) != nil:
		printNoun(e.stdout, name)
	default:
		return unknown(e.stderr, name)
	}
	return 0
}

// run parses the command's flags and arguments and runs it.
func (c *command) run(args []string, e env) int {
	fs, d, runf := c.newFlagSet()
	// Errors and help are printed here, from the table.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printHelp(e.stdout, c, fs)
		return 0
	}
	if err != nil {
		return c.usageLine(e.stderr, err.Error())
	}
	switch min, max := c.argRange(); {
	case max == 0 && len(pos) > 0:
		return c.usageLine(e.stderr, fmt.Sprintf("unexpected argument %q (%s takes no arguments)", pos[0], c.name))
	case len(pos) < min || max >= 0 && len(pos) > max:
		return c.usageLine(e.stderr, fmt.Sprintf("want %s, got %s", c.args, plural(len(pos), "argument")))
	}
	return runf(&call{env: e, cmd: c, pos: pos, daemon: d})
}

// usageLine reports a mistake in the command line with the command's
// usage line: exit status 2.
func (c *command) usageLine(w io.Writer, msg string) int {
	fmt.Fprintf(w, "mailwarden %s: %s\nusage: %s\n", c.name, msg, c.synopsis())
	return 2
}

// call is one run of a command, its flags and arguments parsed.
type call struct {
	env
	cmd *command
	// pos are the positional arguments, as many as cmd.args allows.
	pos []string
	// daemon finds the daemon's socket, for a command marked daemon.
	daemon *daemonFlags
}

// usage reports a mistake in the command line: exit status 2.
func (c *call) usage(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "mailwarden %s: %s\n", c.cmd.name, fmt.Sprintf(format, args...))
	return 2
}

// fail reports an error: input the daemon refused is a usage error (2),
// anything else a failure (1).
func (c *call) fail(err error) int {
	fmt.Fprintf(c.stderr, "mailwarden %s: %v\n", c.cmd.name, err)
	if adminapi.BadInput(err) {
		return 2
	}
	return 1
}

// json prints v as JSON.
func (c *call) json(v any) int { return writeJSON(c.stdout, c.stderr, v) }

// daemonFlags are the flags that find the running daemon's socket.
type daemonFlags struct {
	configPath, dataDir *string
}

// client loads the daemon's config to find the admin socket, as serve
// would, and returns a client for it. A config error is exit status 2.
func (c *call) client() (*adminapi.Client, int) {
	if c.daemon == nil {
		panic("mailwarden " + c.cmd.name + " is not marked daemon in the command table")
	}
	cfg, err := daemon.LoadConfig(*c.daemon.configPath, *c.daemon.dataDir)
	if err != nil {
		return nil, c.usage("%v", err)
	}
	return adminapi.Dial(adminapi.SocketPath(cfg)), 0
}

// connect returns the daemon's client and a context bounding one
// command; done releases both. A nil client means the command is over
// with the exit status code (the error is already printed).
func (c *call) connect() (cl *adminapi.Client, ctx context.Context, done func(), code int) {
	cl, code = c.client()
	if cl == nil {
		return nil, nil, nil, code
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	return cl, ctx, func() { cancel(); cl.Close() }, 0
}

func versionCmd(*flag.FlagSet) runFunc {
	return func(c *call) int {
		fmt.Fprintln(c.stdout, "mailwarden", versionString())
		return 0
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// askCmd is the setup of a command whose only flag is --json: it asks
// the daemon with req, given the positional arguments, and prints the
// answer with show, or as JSON.
func askCmd[T any](req func(ctx context.Context, cl *adminapi.Client, args []string) (T, error),
	show func(w io.Writer, v T, now time.Time)) func(*flag.FlagSet) runFunc {
	return func(fs *flag.FlagSet) runFunc {
		asJSON := jsonFlag(fs)
		return func(c *call) int {
			return ask(c, *asJSON, func(ctx context.Context, cl *adminapi.Client) (T, error) { return req(ctx, cl, c.pos) },
				func(w io.Writer, v T) { show(w, v, time.Now()) })
		}
	}
}

// ask sends one request to the daemon and prints the answer: as JSON
// with --json, else with show. The commands that ask the daemon one
// thing and print what it says are each one call of it.
func ask[T any](c *call, asJSON bool, req func(context.Context, *adminapi.Client) (T, error), show func(w io.Writer, v T)) int {
	cl, ctx, done, code := c.connect()
	if cl == nil {
		return code
	}
	defer done()
	v, err := req(ctx, cl)
	if err != nil {
		return c.fail(err)
	}
	if asJSON {
		return c.json(v)
	}
	show(c.stdout, v)
	return 0
}
