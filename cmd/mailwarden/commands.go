package main

import (
	"flag"
	"slices"
	"strings"
)

// command is one verb of the command line: one row of the table below,
// from which the usage text, each command's help, the README's command
// list (by a test) and the checks of flags and arguments all come.
type command struct {
	// name is the command as typed: a noun and a verb ("latch list"),
	// or one word ("events").
	name string
	// args are the positional arguments as the synopsis shows them;
	// their number is checked from it: NAME is one, [NAME] at most one,
	// NAME... one or more, [NAME ...] any number.
	args string
	// flags are the command's flags as the synopsis shows them. A test
	// checks them against the flags setup defines, except the common
	// ones (see commonFlag) that the usage text explains once.
	flags string
	// summary says in one line what the command does.
	summary string
	// daemon marks a command that talks to the running daemon over its
	// admin socket. It gets --config and --data to find the socket, and
	// call.connect; other commands work without the daemon.
	daemon bool
	// changes marks a command that changes state (the store, or files),
	// as opposed to one that only reads.
	changes bool
	// setup defines the command's flags on fs and returns the function
	// that runs it with them.
	setup func(fs *flag.FlagSet) runFunc
}

// runFunc runs one command whose flags and arguments have been parsed.
type runFunc func(c *call) int

// commands is every command, in the order the usage text lists them. A
// new verb is one row here and one setup function.
var commands = []command{
	{name: "serve", flags: "[--config FILE] [--data DIR]", setup: serveCmd,
		summary: "run the daemon: milter, policy server, dashboard, metrics and admin socket"},
	{name: "config check", args: "FILE", flags: "[--print]", setup: configCheck,
		summary: "check a config file as serve would, without starting"},

	{name: "greylist list", flags: "[--pending|--passed] [--limit N] [--json]", setup: greylistList,
		summary: "list greylisted triplets, newest first"},
	{name: "greylist allow", args: "CLIENT SENDER RECIPIENT", flags: "[--json]", setup: greylistAllow, daemon: true, changes: true,
		summary: "let a waiting triplet through now (CLIENT: an address or a listed netblock; SENDER <> for the null sender)"},
	{name: "greylist stats", flags: "[--json]", setup: greylistStats,
		summary: "count pending and passed triplets and auto-whitelisted clients"},

	{name: "latch list", flags: "[--all] [--kind client|user] [--key KEY] [--limit N] [--json]", setup: latchList, daemon: true,
		summary: "list the active latches (--all: cleared and expired ones too), most recently seen first"},
	{name: "latch show", args: "ID", flags: "[--json]", setup: latchShow, daemon: true,
		summary: "show everything about one latch"},
	{name: "latch clear", args: "ID", flags: "--note TEXT [--json]", setup: latchClear, daemon: true, changes: true,
		summary: "let a latched client or user send again, saying why"},

	{name: "freeze on", flags: "--all|--domain D|--user U|--network CIDR [--note TEXT] [--json]", setup: freezeOn, daemon: true, changes: true,
		summary: "tempfail matching outbound mail until the freeze is lifted"},
	{name: "freeze off", flags: "--all|--domain D|--user U|--network CIDR [--note TEXT] [--json]", setup: freezeOff, daemon: true, changes: true,
		summary: "lift an outbound freeze"},
	{name: "freeze status", flags: "[--json]", setup: freezeStatus, daemon: true,
		summary: "list the outbound freezes in force"},

	{name: "events", flags: "[--since 2h] [--until TIME] [--kind K] [--host IP] [--user U] [--limit N] [--json]", setup: eventsCmd, daemon: true,
		summary: "list recorded decisions and admin actions, newest first"},
	{name: "incident", flags: "[--json]", setup: incidentCmd, daemon: true,
		summary: "the worst day on one screen: freezes, latches, suspect hosts, top senders, queue, new mailboxes, rate trips, antivirus, store, alerts, each with the command that acts on it"},
	{name: "audit", flags: "[--since 7d] [--who USER] [--limit N] [--json]", setup: auditCmd, daemon: true,
		summary: "list the audit trail: who changed what, from where, when and why, newest first"},
	{name: "status", flags: "[--json]", setup: statusCmd, daemon: true,
		summary: "show the daemon's version, uptime, freezes, latches and clamd signatures"},
	{name: "alerts test", setup: alertsTest,
		summary: "send a test alert to every configured receiver and say whether each got it"},
	{name: "alerts list", flags: "[--limit N] [--json]", setup: alertsList,
		summary: "list recent alerts and their delivery state, newest last"},

	{name: "hosts list", flags: "[--site S] [--status suspect|latched|disinfected] [--since 7d] [--limit N] [--json]", setup: hostsList, daemon: true,
		summary: "list the internal hosts with evidence of infection"},
	{name: "hosts show", args: "IP", flags: "[--json]", setup: hostsShow, daemon: true,
		summary: "show everything known about one suspect host"},
	{name: "hosts note", args: "IP TEXT...", flags: "[--json]", setup: hostsNote, daemon: true, changes: true,
		summary: "add a note to a host"},
	{name: "hosts disinfect", args: "IP", flags: "--note TEXT [--json]", setup: hostsDisinfect, daemon: true, changes: true,
		summary: "declare a host clean and clear its latches"},
	{name: "hosts timeline", flags: "[--since 30d] [--limit N] [--json]", setup: hostsTimeline, daemon: true,
		summary: "list the evidence in time order, the first infected machine on top"},
	{name: "scan", args: "[CIDR ...]", flags: "[--json]", setup: scanCmd, daemon: true, changes: true,
		summary: "scan scan.ranges (or the networks given, inside them) for open backdoor ports now"},
	{name: "trap rules", flags: "[--config FILE]", setup: trapRules,
		summary: "print the firewall redirect for the port-25 trap, from the config alone"},

	{name: "user add", args: "NAME", flags: "[--role viewer|admin] [--password-stdin]", setup: userAdd, changes: true,
		summary: "add a dashboard user"},
	{name: "user passwd", args: "NAME", flags: "[--password-stdin]", setup: userPasswd, changes: true,
		summary: "set a dashboard user's password"},
	{name: "user role", args: "NAME viewer|admin", setup: userRole, changes: true,
		summary: "change a dashboard user's role"},
	{name: "user del", args: "NAME", setup: userDel, changes: true,
		summary: "delete a dashboard user"},
	{name: "user list", flags: "[--json]", setup: userList,
		summary: "list the dashboard users"},

	{name: "store init", flags: "[--force]", setup: storeInit, changes: true,
		summary: "make a new, empty store in the data directory (once, for a new installation)"},
	{name: "store backup", args: "FILE", setup: storeBackup,
		summary: "write a consistent copy of the store to FILE, while the daemon runs or not"},
	{name: "store copy", flags: "--from SPEC --to SPEC [--yes]", setup: storeCopy, changes: true,
		summary: "copy every latch, freeze, user, greylist record, host record, alert and audit entry to a new or empty store, another backend or the same, and verify; SPEC: DIR, sqlite:DIR, config:FILE or redis://…; a dry run unless --yes"},
	{name: "store restore", args: "FILE", flags: "[--force]", setup: storeRestore, changes: true,
		summary: "put a backup in place of the store (the daemon stopped); the store it replaces is moved aside"},

	{name: "mailbox audit", flags: "[--json|--csv] [--all] [--snapshot FILE|--no-snapshot]", setup: mailboxAudit,
		summary: "find planted mailboxes"},
	{name: "mailbox snapshot", flags: "[--out FILE]", setup: mailboxSnapshot, changes: true,
		summary: "record every mailbox, to tell new ones later"},
	{name: "mailbox remove", args: "[ADDRESS ...]", flags: "[--list FILE] [--from-audit FILE] [--apply] [--force]", setup: mailboxRemove, changes: true,
		summary: "remove the mailboxes named, listed or marked in an audit; a dry run unless --apply"},
	{name: "mailbox restore", args: "BACKUP|latest", flags: "[--force]", setup: mailboxRestore, changes: true,
		summary: "undo a removal from its backup"},
	{name: "mailbox backups", flags: "[--json]", setup: mailboxBackups,
		summary: "list the removals' backups"},
	{name: "mailbox watch", setup: mailboxWatch,
		summary: "report bursts of new mailboxes as they come"},

	{name: "queue summary", flags: "[--top N] [--json]", setup: queueSummary,
		summary: "count the MTA's queued messages by sender, domain, age and queue: a spam run at a glance"},
	{name: "queue list", flags: "[filters] [--json|--csv]", setup: queueList,
		summary: "list the queued messages the filters select"},
	{name: "queue purge", flags: "[filters] [--apply]", setup: queuePurge, changes: true,
		summary: "delete the queued messages the filters select; a dry run unless --apply"},
	{name: "queue hold", flags: "[filters] [--apply]", setup: queueHold, changes: true,
		summary: "put the queued messages the filters select on hold; a dry run unless --apply"},
	{name: "queue release", flags: "[filters] [--apply]", setup: queueRelease, changes: true,
		summary: "release the held messages the filters select; a dry run unless --apply"},

	{name: "version", setup: versionCmd,
		summary: "print mailwarden's version"},
}

// commonFlag reports whether a flag is one the usage text explains once
// for many commands instead of in each synopsis.
func commonFlag(name string) bool {
	switch name {
	case "config", "data", "layout", "root", "home", "passwd-file":
		return true
	}
	// The queue commands' filters, shown as "[filters]".
	return slices.Contains(queueFilterFlags, name)
}

// synopsis is the command's usage line without "usage: ".
func (c *command) synopsis() string {
	s := "mailwarden " + c.name
	for _, part := range []string{c.args, c.flags} {
		if part != "" {
			s += " " + part
		}
	}
	return s
}

// noun is the first word of the command's name.
func (c *command) noun() string {
	noun, _, _ := strings.Cut(c.name, " ")
	return noun
}

// argRange is how many positional arguments c.args allows; max is -1
// for no limit.
func (c *command) argRange() (min, max int) {
	words := strings.Fields(c.args)
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "[") {
			min++
			if max >= 0 {
				max++
			}
			if strings.HasSuffix(w, "...") {
				max = -1
			}
			continue
		}
		// An optional group, perhaps of several words: "[CIDR ...]".
		group := w
		for !strings.HasSuffix(words[i], "]") && i+1 < len(words) {
			i++
			group += " " + words[i]
		}
		switch {
		case strings.Contains(group, "..."):
			max = -1
		case max >= 0:
			max++
		}
	}
	return min, max
}

// newFlagSet returns c's flags: those setup defines and, for a command
// of the daemon, the flags that find its socket.
func (c *command) newFlagSet() (*flag.FlagSet, *daemonFlags, runFunc) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	var d *daemonFlags
	if c.daemon {
		d = &daemonFlags{
			configPath: fs.String("config", "", "config `file` of the running daemon (to find admin.socket)"),
			dataDir:    fs.String("data", "", "data `directory` of the running daemon (admin.sock is in it)"),
		}
	}
	return fs, d, c.setup(fs)
}
