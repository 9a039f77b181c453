package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"mailwarden/internal/mailbox"
)

func mailboxRemove(fs *flag.FlagSet) runFunc {
	m := newMailboxCmd(fs)
	listFile := fs.String("list", "", "remove the mailboxes listed in this `file`, one local@domain a line")
	auditFile := fs.String("from-audit", "", "remove the mailboxes marked suspect in this JSON audit `file`")
	apply := fs.Bool("apply", false, "remove for real (without it, a dry run shows what would go)")
	force := fs.Bool("force", false, "allow emptying a passwd file or taking more than mailbox.max_remove_share of it")
	return func(c *call) int {
		if code := m.load(c); code >= 0 {
			return code
		}
		var targets []mailbox.Target
		for _, a := range m.pos {
			t, err := mailbox.ParseTarget(a)
			if err != nil {
				return m.usage("%v", err)
			}
			targets = append(targets, t)
		}
		if *listFile != "" {
			ts, err := mailbox.ReadTargetList(*listFile)
			if err != nil {
				return m.usage("--list: %v", err)
			}
			targets = append(targets, ts...)
		}
		if *auditFile != "" {
			af, err := mailbox.ReadAudit(*auditFile)
			if err != nil {
				return m.usage("--from-audit: %v", err)
			}
			if err := m.sameSource(af); err != nil {
				return m.usage("--from-audit: %v", err)
			}
			if len(af.Suspect) == 0 {
				fmt.Fprintf(m.stdout, "%s marks no mailbox suspect; nothing to remove\n", *auditFile)
				return 0
			}
			targets = append(targets, af.Suspect...)
		}
		if len(targets) == 0 {
			return m.usage("name the mailboxes to remove: local@domain arguments, --list FILE or --from-audit FILE")
		}
		mb := m.cfg.Mailbox
		if !*apply {
			p, err := mailbox.BuildPlan(m.source(), targets, m.quarantineDir())
			if err != nil {
				return m.fail(err)
			}
			fmt.Fprintln(m.stdout, "Dry run: nothing has been changed. Add --apply to remove.")
			refusals := p.Refusals(mb.MaxRemoveShare)
			m.printPlan(p, refusals, *force)
			if len(p.Errors) > 0 || len(p.NotFound) > 0 || len(refusals) > 0 && !*force {
				return 1
			}
			return 0
		}
		p, res, err := mailbox.Remove(m.source(), targets, mailbox.ApplyOptions{BackupDir: m.backupDir(),
			QuarantineDir: m.quarantineDir(), MaxShare: mb.MaxRemoveShare, Force: *force})
		if err != nil {
			if p != nil {
				m.printPlan(p, p.Refusals(mb.MaxRemoveShare), *force)
			}
			return m.fail(err)
		}
		m.printResult(p, res)
		if res.Backup != "" {
			m.recordOffline(m.cfg, fmt.Sprintf("removed %d mailboxes (%d files edited, %d failures); backup %s",
				len(p.Targets)-len(p.NotFound), len(res.Edited), len(res.Failed), res.ID))
		}
		if len(res.Failed) > 0 || len(p.NotFound) > 0 {
			return 1
		}
		return 0
	}
}

// sameSource refuses an audit of another tree than the one configured.
func (m *mailboxCmd) sameSource(af *mailbox.AuditFile) error {
	src := m.source()
	switch {
	case af.Layout != src.Layout:
		return fmt.Errorf("the audit is of a %s layout, this run is configured for %s", af.Layout, src.Layout)
	case src.Layout == mailbox.LayoutDirectAdmin && filepath.Clean(af.Root) != filepath.Clean(src.Root):
		return fmt.Errorf("the audit is of %s, this run is configured for %s", af.Root, src.Root)
	}
	return nil
}

// printPlan shows, file by file, exactly what a removal takes out and
// moves. Password hashes are never printed: only line numbers and users.
func (m *mailboxCmd) printPlan(p *mailbox.Plan, refusals []mailbox.Refusal, force bool) {
	w := m.stdout
	lines, boxes := 0, map[mailbox.Target]bool{}
	for _, c := range p.Changes {
		if c.Passwd {
			fmt.Fprintf(w, "%s: %d of %d mailboxes go\n", printable(c.Path), len(c.Removed), c.Entries)
		} else {
			fmt.Fprintf(w, "%s: %s go\n", printable(c.Path), plural(len(c.Removed), "line"))
		}
		for _, r := range c.Removed {
			fmt.Fprintf(w, "  line %d: %s\n", r.Line, printable(r.Key))
			if c.Passwd {
				boxes[r.Target] = true
			}
		}
		lines += len(c.Removed)
	}
	moves := 0
	for _, mv := range p.Moves {
		if mv.Problem != "" {
			fmt.Fprintf(w, "%s %s (%s): left in place: %s\n", mv.What, printable(mv.Path), printable(mv.Target.String()), mv.Problem)
			continue
		}
		fmt.Fprintf(w, "%s %s (%s): moves to the quarantine\n", mv.What, printable(mv.Path), printable(mv.Target.String()))
		moves++
	}
	section := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintln(w, title)
		for _, s := range items {
			fmt.Fprintf(w, "  %s\n", printableText(s))
		}
	}
	var notFound, refused, errs []string
	for _, t := range p.NotFound {
		notFound = append(notFound, t.String())
	}
	for _, r := range refusals {
		refused = append(refused, r.String())
	}
	for _, e := range p.Errors {
		errs = append(errs, e.Error())
	}
	section("Notes:", p.Notes)
	section("Not found (no such passwd entry):", notFound)
	if force {
		section("Allowed by --force:", refused)
	} else {
		section("Refused (--force overrides):", refused)
	}
	section("Cannot be edited safely (nothing will be removed until these are fixed or left out):", errs)
	fmt.Fprintf(w, "Total: %s, %s in %s, %s to the quarantine %s.\n", plural(len(boxes), "mailbox"),
		plural(lines, "line"), plural(len(p.Changes), "file"), plural(moves, "directory or file"), m.quarantineDir())
	fmt.Fprintf(w, "Backups go to %s.\n", m.backupDir())
}

func (m *mailboxCmd) printResult(p *mailbox.Plan, res *mailbox.Result) {
	w := m.stdout
	if res.Backup == "" {
		fmt.Fprintln(w, "Nothing to remove.")
		for _, t := range p.NotFound {
			fmt.Fprintf(w, "not found: %s\n", printable(t.String()))
		}
		return
	}
	fmt.Fprintf(w, "Backup: %s\n", res.Backup)
	printEach(w, "edited and verified", res.Edited)
	for _, mv := range res.Moved {
		fmt.Fprintf(w, "quarantined: %s -> %s\n", printable(mv.From), printable(mv.To))
	}
	for _, mv := range p.Moves {
		if mv.Problem != "" {
			fmt.Fprintf(w, "left in place: %s: %s\n", printable(mv.Path), mv.Problem)
		}
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "note: %s\n", printableText(n))
	}
	for _, t := range p.NotFound {
		fmt.Fprintf(w, "not found: %s\n", printable(t.String()))
	}
	printEach(w, "skipped after a failure", res.Skipped)
	for _, err := range res.Failed {
		fmt.Fprintf(m.stderr, "mailwarden mailbox remove: %s\n", printableText(err.Error()))
	}
	boxes := 0
	for _, c := range p.Changes {
		if c.Passwd && !slices.Contains(res.Skipped, c.Unit) {
			boxes += len(c.Removed)
		}
	}
	fmt.Fprintf(w, "Removed %s. To undo: mailwarden mailbox restore %s\n", plural(boxes, "mailbox"), res.ID)
}

func mailboxRestore(fs *flag.FlagSet) runFunc {
	m := newMailboxCmd(fs)
	force := fs.Bool("force", false, "restore files that changed since the removal too (their current content is saved in the backup)")
	return func(c *call) int {
		if code := m.load(c); code >= 0 {
			return code
		}
		dir, err := mailbox.FindBackup(m.backupDir(), m.pos[0])
		if err != nil {
			return m.fail(err)
		}
		res, err := mailbox.Restore(dir, mailbox.RestoreOptions{Force: *force})
		w := m.stdout
		if res != nil {
			printEach(w, "restored", res.Restored)
			printEach(w, "moved back", res.MovedBack)
			printEach(w, "saved the overwritten content", res.Saved)
			printEach(w, "left alone (the removal never edited it)", res.Untouched)
			if len(res.Unchanged) > 0 {
				fmt.Fprintf(w, "%d files already had their old content\n", len(res.Unchanged))
			}
		}
		if res != nil && len(res.Restored)+len(res.MovedBack) > 0 {
			m.recordOffline(m.cfg, fmt.Sprintf("restored %d files and moved back %d mail directories from the mailbox backup %s",
				len(res.Restored), len(res.MovedBack), filepath.Base(dir)))
		}
		if err != nil {
			return m.fail(err)
		}
		fmt.Fprintf(w, "Restored %s.\n", dir)
		return 0
	}
}

func mailboxBackups(fs *flag.FlagSet) runFunc {
	m := newMailboxCmd(fs)
	asJSON := jsonFlag(fs)
	return func(c *call) int {
		if code := m.load(c); code >= 0 {
			return code
		}
		list, err := mailbox.ListBackups(m.backupDir())
		if err != nil {
			return m.fail(err)
		}
		if *asJSON {
			out := make([]map[string]any, 0, len(list))
			for _, b := range list {
				out = append(out, map[string]any{"id": b.ID, "dir": b.Dir, "created": b.Created, "state": b.State,
					"mailboxes": b.Mailboxes, "lines": b.Lines, "files": b.Files, "moves": b.Moves})
			}
			return writeJSON(m.stdout, m.stderr, out)
		}
		printBackups(m.stdout, list, m.backupDir())
		return 0
	}
}

func printBackups(w io.Writer, list []mailbox.BackupInfo, dir string) {
	printTable(w, list, "no backups in "+dir, "ID\tCREATED\tMAILBOXES\tLINES\tFILES\tMOVED\tSTATE", func(b mailbox.BackupInfo) []string {
		return []string{b.ID, localTime(b.Created), strconv.Itoa(b.Mailboxes), strconv.Itoa(b.Lines), strconv.Itoa(b.Files),
			strconv.Itoa(b.Moves), orDash(b.State)}
	})
}

// printEach prints one "what: item" line per item.
func printEach(w io.Writer, what string, items []string) {
	for _, it := range items {
		fmt.Fprintf(w, "%s: %s\n", what, printable(it))
	}
}

// plural writes a count with its noun: "1 line", "2 lines", "3 mailboxes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	switch {
	case strings.HasSuffix(noun, "x"):
		return fmt.Sprintf("%d %ses", n, noun)
	case noun == "directory or file":
		return fmt.Sprintf("%d directories and files", n)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
