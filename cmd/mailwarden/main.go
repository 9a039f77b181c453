// Command mailwarden is the mailwarden daemon and its admin tools.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

const usage = `mailwarden protects a small organisation's mail system.

Usage:
  mailwarden serve [--config FILE] [--data DIR]     run the daemon (milter, policy server, HTTP)
  mailwarden config check [--print] FILE            check a config file without starting
  mailwarden greylist list [--pending|--passed] [--limit N] [--json]
  mailwarden greylist allow CLIENT SENDER RECIPIENT  let a waiting triplet through now
  mailwarden greylist stats [--json]
  mailwarden latch list [--all] [--kind client|user] [--limit N] [--json]
  mailwarden latch show ID [--json]
  mailwarden latch clear ID --note TEXT             let a latched client or user send again
  mailwarden freeze on --all|--domain D|--user U|--network CIDR [--note TEXT]
  mailwarden freeze off --all|--domain D|--user U|--network CIDR [--note TEXT]
  mailwarden freeze status [--json]                 list the outbound freezes in force
  mailwarden events [--since 2h] [--until TIME] [--kind K] [--host IP] [--user U] [--limit N] [--json]
  mailwarden status [--json]                        version, uptime, freezes, latches, clamd signatures
  mailwarden hosts list [--site S] [--status suspect|latched|disinfected] [--since 7d] [--limit N] [--json]
  mailwarden hosts show IP [--json]                 everything known about one suspect host
  mailwarden hosts note IP TEXT                     add a note to a host
  mailwarden hosts disinfect IP --note TEXT         declare a host clean and clear its latches
  mailwarden hosts timeline [--since 30d] [--limit N] [--json]
  mailwarden scan [CIDR ...] [--json]               scan for open backdoor ports now
  mailwarden trap rules [--config FILE]             print the firewall redirect for the port-25 trap
  mailwarden user add [--role viewer|admin] [--password-stdin] NAME  add a dashboard user
  mailwarden user passwd [--password-stdin] NAME    set a dashboard user's password
  mailwarden user role NAME viewer|admin            change a dashboard user's role
  mailwarden user del NAME                          delete a dashboard user
  mailwarden user list [--json]                     list the dashboard users
  mailwarden mailbox audit [--json|--csv] [--all] [--snapshot FILE|--no-snapshot]  find planted mailboxes
  mailwarden mailbox snapshot [--out FILE]          record every mailbox, to tell new ones later
  mailwarden mailbox remove ADDRESS...|--list FILE|--from-audit FILE [--apply] [--force]
  mailwarden mailbox restore BACKUP|latest [--force]  undo a removal from its backup
  mailwarden mailbox backups [--json]               list the removals' backups
  mailwarden mailbox watch                          report bursts of new mailboxes as they come
  mailwarden version

The greylist and user commands take --config FILE and --data DIR like
serve, to find the same store. With no --config, built-in defaults apply: listeners on
127.0.0.1 (policy 10023, milter 10029, HTTP 8025), data in /var/lib/mailwarden.
The latch, freeze, events, status, hosts and scan commands talk to the
running daemon over its admin socket (admin.socket, else admin.sock in
data_dir) and take the same --config and --data to find it. trap rules
works offline, from the config file. The mailbox commands work offline on
the passwd files (mailbox: in the config; --layout, --root, --home and
--passwd-file override it); remove is a dry run unless --apply. See
docs/mailbox.md.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit status: 0 success,
// 1 failure, 2 usage or configuration error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "greylist":
		return cmdGreylist(args[1:], stdout, stderr)
	case "latch":
		return cmdLatch(args[1:], stdout, stderr)
	case "freeze":
		return cmdFreeze(args[1:], stdout, stderr)
	case "events":
		return cmdEvents(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "hosts":
		return cmdHosts(args[1:], stdout, stderr)
	case "scan":
		return cmdScan(args[1:], stdout, stderr)
	case "trap":
		return cmdTrap(args[1:], stdout, stderr)
	case "mailbox":
		return cmdMailbox(args[1:], stdout, stderr)
	case "user":
		return cmdUser(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "mailwarden", versionString())
		return 0
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "mailwarden: unknown command %q\n\n%s", args[0], usage)
	return 2
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
