package main

import (
	"flag"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// flagNames are the flags a command defines, sorted.
func flagNames(c *command) []string {
	fs, _, _ := c.newFlagSet()
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

var synopsisFlag = regexp.MustCompile(`--([a-z][a-z0-9-]*)`)

// TestCommandTable checks each row: a unique name of one or two words,
// a summary, and a synopsis that names exactly the flags the command
// defines (those explained once for all, like --config, may be left
// out).
func TestCommandTable(t *testing.T) {
	seen := map[string]bool{}
	for i := range commands {
		c := &commands[i]
		if seen[c.name] || len(strings.Fields(c.name)) > 2 || c.summary == "" || c.setup == nil {
			t.Errorf("%q: duplicate, more than two words, or no summary or setup", c.name)
		}
		seen[c.name] = true
		if find(c.noun()) != nil && c.noun() != c.name {
			t.Errorf("%q: its noun is a command too", c.name)
		}
		defined := flagNames(c)
		var shown []string
		for _, m := range synopsisFlag.FindAllStringSubmatch(c.flags+" "+c.args, -1) {
			shown = append(shown, m[1])
			if !slices.Contains(defined, m[1]) {
				t.Errorf("%q: the synopsis shows --%s, which it does not define", c.name, m[1])
			}
		}
		for _, f := range defined {
			if !commonFlag(f) && !slices.Contains(shown, f) {
				t.Errorf("%q: defines --%s, which its synopsis does not show", c.name, f)
			}
		}
		if c.daemon && (!slices.Contains(defined, "config") || !slices.Contains(defined, "data")) {
			t.Errorf("%q needs the daemon but has no --config and --data to find it", c.name)
		}
	}
}

// TestStateChangesGoThroughTheDaemon: a command that changes state goes
// through the daemon, which checks and audits it, unless it works
// without the daemon by design: dashboard users (to make the first one
// before the daemon runs), the store commands (the daemon is stopped for
// a restore) and the queue tools, which act on the MTA's queue, all
// audited through the same event log (TestEveryChangingVerbIsAudited);
// and the offline mailbox tools on the passwd files, whose record is
// their backup manifest.
func TestStateChangesGoThroughTheDaemon(t *testing.T) {
	for _, c := range commands {
		if c.changes && !c.daemon && c.noun() != "user" && c.noun() != "mailbox" && c.noun() != "store" && c.noun() != "queue" {
			t.Errorf("%q changes state without the daemon", c.name)
		}
	}
}

func TestArgRange(t *testing.T) {
	for args, want := range map[string][2]int{
		"":                        {0, 0},
		"ID":                      {1, 1},
		"CLIENT SENDER RECIPIENT": {3, 3},
		"NAME viewer|admin":       {2, 2},
		"BACKUP|latest":           {1, 1},
		"IP TEXT...":              {2, -1},
		"[CIDR ...]":              {0, -1},
		"[ADDRESS...]":            {0, -1},
		"FILE [FILE]":             {1, 2},
	} {
		c := command{args: args}
		if min, max := c.argRange(); min != want[0] || max != want[1] {
			t.Errorf("argRange(%q) = %d, %d; want %d, %d", args, min, max, want[0], want[1])
		}
	}
}

// helpFlags are the flags a command's help lists.
func helpFlags(t *testing.T, help string) []string {
	t.Helper()
	_, list, ok := strings.Cut(help, "\nFlags:\n")
	if !ok {
		return nil
	}
	var names []string
	for _, line := range strings.Split(strings.TrimRight(list, "\n"), "\n") {
		m := regexp.MustCompile(`^  --([a-z][a-z0-9-]*)\b`).FindStringSubmatch(line)
		if m == nil {
			t.Errorf("help line %q does not start with a flag", line)
			continue
		}
		names = append(names, m[1])
	}
	sort.Strings(names)
	return names
}

// TestEveryCommandHelp: --help, -h and "help COMMAND" exit 0 and show
// the command's synopsis, summary and exactly its own flags.
func TestEveryCommandHelp(t *testing.T) {
	for i := range commands {
		c := &commands[i]
		name := strings.Fields(c.name)
		for _, args := range [][]string{append(slices.Clone(name), "--help"), append(slices.Clone(name), "-h"),
			append([]string{"help"}, name...)} {
			code, stdout, stderr := runCmd(args...)
			if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "usage: "+c.synopsis()+"\n") ||
				!strings.Contains(stdout, c.summary[1:]) {
				t.Errorf("%q: exit %d, stderr %q, stdout:\n%s", args, code, stderr, stdout)
				continue
			}
			if got, want := helpFlags(t, stdout), flagNames(c); !slices.Equal(got, want) {
				t.Errorf("%q lists flags %v, want %v", args, got, want)
			}
		}
	}
}

func TestCommandLineMistakes(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		code         int
		stdout, errs string
	}{
		// A flag of another verb of the same noun is not a flag of this one.
		{[]string{"latch", "show", "X", "--note", "y"}, 2, "", "mailwarden latch show: flag provided but not defined: -note\nusage: mailwarden latch show ID [--json]\n"},
		{[]string{"latch", "list", "--all", "--note", "y"}, 2, "", "usage: mailwarden latch list "},
		{[]string{"latch", "show"}, 2, "", "mailwarden latch show: want ID, got 0 arguments\nusage: mailwarden latch show ID [--json]\n"},
		{[]string{"latch", "show", "A", "B"}, 2, "", "want ID, got 2 arguments"},
		{[]string{"latch", "list", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"greylist", "allow", "192.0.2.1", "a@b"}, 2, "", "usage: mailwarden greylist allow CLIENT SENDER RECIPIENT"},
		{[]string{"latch", "shwo", "X"}, 2, "", "mailwarden: unknown command \"latch shwo\"; did you mean \"latch show\"? (mailwarden help)\n"},
		{[]string{"lacth", "list"}, 2, "", `unknown command "lacth"; did you mean "latch"?`},
		{[]string{"stauts"}, 2, "", `did you mean "status"?`},
		{[]string{"frobnicate"}, 2, "", "mailwarden: unknown command \"frobnicate\" (mailwarden help)\n"},
		{[]string{"latch"}, 2, "", "usage: mailwarden latch VERB"},
		{[]string{"latch", "--json"}, 2, "", "  mailwarden latch clear ID --note TEXT [--json]\n"},
		{[]string{"latch", "--help"}, 0, "  mailwarden latch show ID [--json]\n", ""},
		{[]string{"help", "latch"}, 0, "  mailwarden latch list ", ""},
		{[]string{"help", "latch", "shwo"}, 2, "", `did you mean "latch show"?`},
		{[]string{}, 2, "", "  mailwarden latch show ID [--json]\n"},
		{[]string{"help"}, 0, "  mailwarden latch show ID [--json]\n", ""},
		{[]string{"--help"}, 0, "Usage: mailwarden COMMAND", ""},
		{[]string{"--version"}, 0, "mailwarden ", ""},
		{[]string{"version", "extra"}, 2, "", "usage: mailwarden version\n"},
	} {
		code, stdout, stderr := runCmd(tc.args...)
		if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.errs) ||
			(tc.stdout == "") != (stdout == "") || (tc.errs == "") != (stderr == "") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tc.args, code, stdout, stderr, tc.code, tc.stdout, tc.errs)
		}
	}
	// latch list's help shows its own flags and not those of latch clear.
	code, stdout, _ := runCmd("latch", "list", "--help")
	if code != 0 || strings.Contains(stdout, "--note") || !strings.Contains(stdout, "--kind KIND") {
		t.Errorf("latch list --help: exit %d\n%s", code, stdout)
	}
}

// TestREADMECommands keeps the README's command list the command table:
// the same lines in the same order.
func TestREADMECommands(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "## Commands\n\n```\n")
	block, _, ok2 := strings.Cut(block, "```\n")
	if !ok || !ok2 {
		t.Fatal("README.md has no code block after \"## Commands\"")
	}
	var want strings.Builder
	for i := range commands {
		want.WriteString(commands[i].synopsis() + "\n")
	}
	if block != want.String() {
		t.Errorf("README.md's command list differs from the command table; it should read:\n%s", want.String())
	}
}

// TestEveryCommandRefusesUnknownFlags: for every command in the table, an
// unknown flag exits 2 with a short hint on stderr (what was wrong and
// the command's usage line, not its whole help) and nothing on stdout.
func TestEveryCommandRefusesUnknownFlags(t *testing.T) {
	for i := range commands {
		c := &commands[i]
		args := append(strings.Fields(c.name), "--no-such-flag")
		code, stdout, stderr := runCmd(args...)
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if code != 2 || stdout != "" || len(lines) != 2 ||
			lines[0] != "mailwarden "+c.name+": flag provided but not defined: -no-such-flag" ||
			lines[1] != "usage: "+c.synopsis() {
			t.Errorf("%q: exit %d, stdout %q, stderr:\n%s", args, code, stdout, stderr)
		}
	}
	// Unknown commands, for every noun: exit 2 and one line.
	for i := range commands {
		noun := commands[i].noun()
		args := []string{noun, "no-such-verb"}
		if noun == commands[i].name {
			args = []string{noun + "x"}
		}
		code, stdout, stderr := runCmd(args...)
		if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "unknown command") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

// TestExitStatusDocumented: "mailwarden help" and the README say what
// the exit statuses mean, in the same words.
func TestExitStatusDocumented(t *testing.T) {
	code, stdout, _ := runCmd("help")
	if code != 0 || !strings.Contains(stdout, exitStatusText) {
		t.Errorf("mailwarden help does not explain the exit status:\n%s", stdout)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), exitStatusText) {
		t.Errorf("README.md does not explain the exit status; it should say:\n%s", exitStatusText)
	}
}
