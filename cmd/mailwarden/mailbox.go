package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
	"mailwarden/internal/mailbox"
	"mailwarden/internal/store/backend"
)

// mailboxCmd is one run of a "mailwarden mailbox" command. The mailbox
// tools work offline, on the passwd files; none needs the daemon.
type mailboxCmd struct {
	*call
	// The flags every verb takes.
	configPath, dataDir, layout, root, home *string
	passwd                                  listFlag
	// cfg is the configuration with the command line's overrides.
	cfg config.Config
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// newMailboxCmd defines the flags every mailbox command takes.
func newMailboxCmd(fs *flag.FlagSet) *mailboxCmd {
	m := &mailboxCmd{}
	m.configPath, m.dataDir = configFlags(fs)
	m.layout = fs.String("layout", "", "mail server `layout`: directadmin or dovecot (overrides mailbox.layout)")
	m.root = fs.String("root", "", "DirectAdmin's /etc/virtual `directory` (overrides mailbox.root)")
	m.home = fs.String("home", "", "the mail directories' root `directory` (overrides mailbox.home)")
	fs.Var(&m.passwd, "passwd-file", "a Dovecot passwd-`file` (dovecot layout; repeat for several)")
	return m
}

// load loads the configuration with the command line's overrides. It
// returns an exit status when that failed, else -1.
func (m *mailboxCmd) load(c *call) int {
	m.call = c
	var err error
	if m.cfg, err = daemon.LoadConfig(*m.configPath, *m.dataDir); err != nil {
		return m.usage("%v", err)
	}
	mb := &m.cfg.Mailbox
	if *m.layout != "" {
		mb.Layout = *m.layout
	}
	if mb.Layout != mailbox.LayoutDirectAdmin && mb.Layout != mailbox.LayoutDovecot {
		return m.usage("--layout %q: want directadmin or dovecot", mb.Layout)
	}
	for _, p := range []struct {
		flag string
		val  *string
		dst  *string
	}{{"root", m.root, &mb.Root}, {"home", m.home, &mb.Home}} {
		if *p.val == "" {
			continue
		}
		if *p.dst, err = filepath.Abs(*p.val); err != nil {
			return m.usage("--%s: %v", p.flag, err)
		}
	}
	if len(m.passwd) > 0 {
		mb.PasswdFiles = nil
		for _, f := range m.passwd {
			abs, err := filepath.Abs(f)
			if err != nil {
				return m.usage("--passwd-file: %v", err)
			}
			mb.PasswdFiles = append(mb.PasswdFiles, abs)
		}
	}
	if mb.Layout == mailbox.LayoutDovecot && len(mb.PasswdFiles) == 0 {
		return m.usage("the dovecot layout needs --passwd-file or mailbox.passwd_files")
	}
	return -1
}

func (m *mailboxCmd) source() mailbox.Source {
	mb := m.cfg.Mailbox
	return mailbox.Source{Layout: mb.Layout, Root: mb.Root, Home: mb.Home, PasswdFiles: mb.PasswdFiles}
}

func (m *mailboxCmd) backupDir() string {
	return m.cfg.MailboxPath(m.cfg.Mailbox.BackupDir, "mailbox-backups")
}
func (m *mailboxCmd) quarantineDir() string {
	return m.cfg.MailboxPath(m.cfg.Mailbox.QuarantineDir, "mailbox-quarantine")
}
func (m *mailboxCmd) snapshotFile() string {
	return m.cfg.MailboxPath(m.cfg.Mailbox.Snapshot, "mailbox-snapshot")
}

// progress returns a progress bar on standard error when it is a
// terminal (a large tree takes a while), else nil.
func (m *mailboxCmd) progress(what string) func(done, total int) {
	f, ok := m.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	var bar *progressbar.ProgressBar
	return func(done, total int) {
		if bar == nil {
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription(what),
				progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		}
		bar.Set(done)
		if done == total {
			bar.Finish()
		}
	}
}

// read lists the mailboxes, warning about files that could not be read.
func (m *mailboxCmd) read() (*mailbox.Inventory, int) {
	inv, err := mailbox.Read(m.source(), m.progress("reading passwd files"))
	if err != nil {
		return nil, m.fail(err)
	}
	for _, p := range append(inv.Notes, inv.Problems...) {
		fmt.Fprintf(m.stderr, "mailwarden %s: warning: %s\n", m.cmd.name, printableText(p.Error()))
	}
	return inv, -1
}

func mailboxAudit(fs *flag.FlagSet) runFunc {
	m := newMailboxCmd(fs)
	asJSON := fs.Bool("json", false, "print the whole audit as JSON (feed it to remove --from-audit)")
	asCSV := fs.Bool("csv", false, "print one CSV row per mailbox")
	all := fs.Bool("all", false, "list every mailbox, not only the suspect ones")
	snapPath := fs.String("snapshot", "", "compare with this snapshot `file` (default: mailbox.snapshot, if it exists)")
	noSnap := fs.Bool("no-snapshot", false, "do not compare with any snapshot")
	return func(c *call) int {
		if code := m.load(c); code >= 0 {
			return code
		}
		if *asJSON && *asCSV {
			return m.usage("--json and --csv: choose one")
		}
		mb := m.cfg.Mailbox
		o := mailbox.AuditOptions{ManyDomains: mb.ManyDomains, RoleNames: mb.RoleNames, MaxDistance: mb.MaxDistance,
			BurstCount: mb.BurstCount, BurstWindow: mb.BurstWindow.D()}
		snapFile := ""
		if !*noSnap {
			snapFile = *snapPath
			if snapFile == "" {
				snapFile = m.snapshotFile()
			}
			snap, err := mailbox.ReadSnapshot(snapFile)
			switch {
			case err == nil:
				o.Snapshot = snap
			case errors.Is(err, os.ErrNotExist) && *snapPath == "":
				snapFile = "" // none taken yet: audit without
			default:
				return m.fail(err)
			}
		}
		inv, code := m.read()
		if code >= 0 {
			return code
		}
		r := mailbox.Audit(inv, o)
		var err error
		switch {
		case *asJSON:
			err = mailbox.WriteJSON(m.stdout, r, snapFile, time.Now())
		case *asCSV:
			err = mailbox.WriteCSV(m.stdout, r)
		default:
			printAudit(m.stdout, r, snapFile, *all)
		}
		if err != nil {
			return m.fail(err)
		}
		if len(inv.Problems) > 0 {
			fmt.Fprintf(m.stderr, "mailwarden mailbox audit: %d file(s) could not be read; the audit leaves them out\n", len(inv.Problems))
			return 1
		}
		return 0
	}
}

func printAudit(w io.Writer, r *mailbox.Report, snapFile string, all bool) {
	src := r.Inventory.Source
	where := src.Root
	if src.Layout == mailbox.LayoutDovecot {
		where = strings.Join(src.PasswdFiles, ", ")
	}
	fmt.Fprintf(w, "%d mailboxes on %d domains (%s, %s).\n", r.Len(), r.Inventory.Domains, src.Layout, printableText(where))
	if s := r.Options.Snapshot; s != nil {
		fmt.Fprintf(w, "Compared with the snapshot of %s (%s).\n", localTime(s.Taken), snapFile)
	} else {
		fmt.Fprintln(w, "No snapshot to compare with (take one with \"mailwarden mailbox snapshot\", from cron, to tell new mailboxes from old).")
	}
	for _, b := range r.Bursts {
		fmt.Fprintf(w, "Burst: %d mailboxes created from %s to %s (a burst here is %d or more within %s).\n",
			b.Count, localTime(b.Start), localTime(b.End), r.BurstThreshold, r.Options.BurstWindow)
	}
	if len(r.LocalParts) > 0 {
		fmt.Fprintln(w, "\nLocal parts on many domains or near a role name:")
		tw := newTabWriter(w)
		fmt.Fprintln(tw, "LOCAL PART\tDOMAINS\tNEAR ROLE\tSUSPECT")
		for _, lp := range r.LocalParts {
			near := "-"
			if lp.Role != "" {
				near = fmt.Sprintf("%s (%d)", lp.Role, lp.Distance)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", printable(lp.Local), lp.Domains, near, lp.Suspect)
		}
		tw.Flush()
	}
	title := fmt.Sprintf("\n%d suspect mailboxes, proposed for removal:", r.Suspect)
	if all {
		title = "\nEvery mailbox:"
	}
	fmt.Fprintln(w, title)
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "ADDRESS\tOWNER\tCREATED\tFLAGS\tSUSPECT\tFILE:LINE")
	for _, e := range r.Entries() {
		if !all && !e.Suspect {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s:%d\n", printable(e.Address()), orDash(printable(e.Owner)), localTime(e.Created),
			orDash(e.Flags.String()), yesNo(e.Suspect), printable(e.File), e.Line)
	}
	tw.Flush()
	if n := r.Flagged - r.Suspect; !all && n > 0 {
		fmt.Fprintf(w, "%d more mailboxes are flagged but not suspect (older than the snapshot or outside every burst); --all lists them.\n", n)
	}
	if r.Suspect > 0 {
		fmt.Fprintln(w, "\nReview with --json > audit.json (set \"suspect\" to false for any to keep), then:\n  mailwarden mailbox remove --from-audit audit.json            (a dry run)\n  mailwarden mailbox remove --from-audit audit.json --apply")
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func mailboxSnapshot(fs *flag.FlagSet) runFunc {
	m := newMailboxCmd(fs)
	out := fs.String("out", "", "write the snapshot to this `file` (default: mailbox.snapshot)")
	return func(c *call) int {
		if code := m.load(c); code >= 0 {
			return code
		}
		path := *out
		if path == "" {
			path = m.snapshotFile()
		}
		prev, err := mailbox.ReadSnapshot(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return m.fail(fmt.Errorf("%w (move it away to start afresh)", err))
		}
		inv, code := m.read()
		if code >= 0 {
			return code
		}
		if len(inv.Problems) > 0 {
			// A snapshot missing a domain would make all its boxes "new" in
			// the next audit.
			return m.fail(errors.New("not writing a snapshot with files left out; fix them first"))
		}
		s := mailbox.NewSnapshot(inv, prev, time.Now())
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return m.fail(err)
		}
		if err := mailbox.WriteSnapshot(path, s); err != nil {
			return m.fail(err)
		}
		fmt.Fprintf(m.stdout, "snapshot of %d mailboxes on %d domains written to %s", len(s.FirstSeen), inv.Domains, path)
		if prev != nil {
			fmt.Fprintf(m.stdout, " (%d new since the snapshot of %s)", s.New(prev), localTime(prev.Taken))
		}
		fmt.Fprintln(m.stdout)
		// A snapshot runs from cron on hosts that may have no store:
		// only a store that is there but cannot record is reported.
		what := fmt.Sprintf("recorded a snapshot of %d mailboxes on %d domains in %s", len(s.FirstSeen), inv.Domains, path)
		if err := m.record(m.cfg, what); err != nil && !errors.Is(err, backend.ErrNoStore) {
			fmt.Fprintf(m.stderr, "mailwarden %s: done, but recording it in the audit log failed: %v\n", m.cmd.name, err)
		}
		return 0
	}
}

func mailboxWatch(fs *flag.FlagSet) runFunc {
	m := newMailboxCmd(fs)
	return func(c *call) int {
		if code := m.load(c); code >= 0 {
			return code
		}
		mb := m.cfg.Mailbox
		w, err := mailbox.NewWatcher(mailbox.WatchOptions{Source: m.source(), BurstCount: mb.BurstCount,
			BurstWindow: mb.BurstWindow.D(), Log: slog.New(slog.NewTextHandler(m.stderr, &slog.HandlerOptions{Level: slog.LevelError})),
			OnBurst: func(b mailbox.WatchBurst) {
				fmt.Fprintf(m.stdout, "%s %s\n", localTime(b.Time), printableText(b.Summary()))
			}})
		if err != nil {
			return m.fail(err)
		}
		defer w.Close()
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		fmt.Fprintf(m.stdout, "watching %d passwd files for %d or more new mailboxes within %s; Ctrl-C stops\n",
			w.Files(), mb.BurstCount, mb.BurstWindow)
		w.Run(ctx)
		return 0
	}
}
