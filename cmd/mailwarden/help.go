package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"mailwarden/internal/typo"
)

// usageText is what "mailwarden help" prints, made from the command
// table.
func usageText() string {
	var b strings.Builder
	b.WriteString(`mailwarden protects a small organisation's mail system.

Usage: mailwarden COMMAND [ARGUMENTS] [FLAGS]
`)
	noun := ""
	for i := range commands {
		c := &commands[i]
		if c.noun() != noun {
			b.WriteString("\n")
			noun = c.noun()
		}
		writeEntry(&b, c)
	}
	b.WriteString(`
Flags may come before or after the arguments. "mailwarden help COMMAND"
or "mailwarden COMMAND --help" shows a command's help and all its flags.

Commands marked (daemon) talk to the running daemon over its admin socket
(admin.socket, else admin.sock in data_dir). They, and the commands that
read the config or the store, take --config FILE and --data DIR as serve
does. With no --config, built-in defaults apply: listeners on 127.0.0.1
(policy 10023, milter 10029, HTTP 8025), data in /var/lib/mailwarden.
The mailbox commands work on the passwd files (mailbox: in the config;
--layout, --root, --home and --passwd-file override it). See
docs/mailbox.md.
The queue commands work on the MTA's queue (queue: in the config), with
no daemon. Their [filters], all of which must match, are --sender and
--recipient PATTERN (* any characters, ? one), --sender-domain and
--recipient-domain D, --sender-regexp and --recipient-regexp RE,
--older-than and --newer-than AGE (2h, 3d), --queue NAME (active,
deferred, hold, incoming, maildrop), --min-size and --max-size BYTES.
See docs/queue.md.

` + exitStatusText)
	return b.String()
}

// exitStatusText is what every command's exit status means; the README
// says the same (TestExitStatusDocumented).
const exitStatusText = `Exit status, for every command: 0 done; 1 failed (the daemon, the store
or the MTA refused or could not be reached, or a check found problems);
2 usage or configuration error (unknown command or flag, wrong
arguments, a config that does not load); 130 interrupted at a password
prompt.
`

// writeEntry writes a command's synopsis and, below it, its summary.
func writeEntry(w io.Writer, c *command) {
	summary := c.summary
	if c.daemon {
		summary += " (daemon)"
	}
	fmt.Fprintf(w, "  %s\n        %s\n", c.synopsis(), summary)
}

// printNoun lists the commands of a noun, for "mailwarden latch".
func printNoun(w io.Writer, noun string) {
	fmt.Fprintf(w, "usage: mailwarden %s VERB [ARGUMENTS] [FLAGS]\n\n", noun)
	for _, c := range nounCommands(noun) {
		writeEntry(w, c)
	}
	fmt.Fprintf(w, "\n\"mailwarden help %s VERB\" shows a command's help and all its flags.\n", noun)
}

// printHelp writes a command's help: its synopsis, what it does, and
// every flag fs (made by c.newFlagSet) has.
func printHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\n%s.\n", c.synopsis(), sentence(c.summary))
	if c.daemon {
		fmt.Fprintln(w, "It talks to the running daemon over its admin socket (admin.socket, else admin.sock in data_dir).")
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	tw := newTabWriter(w)
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if arg != "" {
			arg = " " + strings.ToUpper(arg)
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" {
			usage += fmt.Sprintf(" (default %s)", d)
		}
		fmt.Fprintf(tw, "  --%s%s\t%s\n", f.Name, arg, usage)
	})
	tw.Flush()
}

// sentence starts s with a capital letter.
func sentence(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

// unknown reports a command that is not in the table, with the nearest
// that is: exit status 2.
func unknown(w io.Writer, typed string) int {
	hint := ""
	if s := suggest(typed); s != "" {
		hint = fmt.Sprintf("; did you mean %q?", s)
	}
	fmt.Fprintf(w, "mailwarden: unknown command %q%s (mailwarden help)\n", typed, hint)
	return 2
}

// suggest returns the command or noun nearest to typed, if it is near
// enough to be a typo.
func suggest(typed string) string {
	var names []string
	for i := range commands {
		names = append(names, commands[i].name, commands[i].noun())
	}
	return typo.Closest(typed, names, 3)
}
