package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"mailwarden/internal/human"
)

// Mailbox configures the mailbox tools: "mailwarden mailbox audit",
// "snapshot", "remove", "restore" and "watch", and the daemon's watch on
// the passwd files.
type Mailbox struct {
	// Layout is "directadmin" (/etc/virtual/<domain>/passwd and the
	// files beside it) or "dovecot" (the passwd-files listed in
	// PasswdFiles).
	Layout string `yaml:"layout"`
	// Root is DirectAdmin's /etc/virtual.
	Root string `yaml:"root"`
	// Home holds the DirectAdmin accounts' mail directories,
	// <home>/<owner>/imap/<domain>/<box>. With the dovecot layout a
	// removed user's home directory is quarantined only when it lies
	// inside Home.
	Home string `yaml:"home"`
	// PasswdFiles are the Dovecot passwd-files (dovecot layout).
	PasswdFiles []string `yaml:"passwd_files"`
	// BackupDir receives a backup before every removal; "" means
	// mailbox-backups in data_dir.
	BackupDir string `yaml:"backup_dir"`
	// QuarantineDir receives removed mailboxes' mail directories; ""
	// means mailbox-quarantine in data_dir. It must be on the same file
	// system as the mail directories: they are moved, never copied.
	QuarantineDir string `yaml:"quarantine_dir"`
	// Snapshot is the file "mailbox snapshot" writes and "mailbox
	// audit" compares with; "" means mailbox-snapshot in data_dir.
	Snapshot string `yaml:"snapshot"`
	// ManyDomains flags a local part found on at least this many domains.
	ManyDomains int `yaml:"many_domains"`
	// RoleNames are the role addresses attackers imitate; a local part
	// within MaxDistance edits of one (but not equal to it) is flagged.
	RoleNames []string `yaml:"role_names"`
	// MaxDistance is the largest edit distance counted as a near miss,
	// and never more than one edit per three letters of the role name.
	MaxDistance int `yaml:"max_distance"`
	// BurstCount mailboxes created within BurstWindow are a burst.
	BurstCount  int      `yaml:"burst_count"`
	BurstWindow Duration `yaml:"burst_window"`
	// MaxRemoveShare is the largest share of one passwd file a removal
	// may take without --force.
	MaxRemoveShare float64 `yaml:"max_remove_share"`
	// Watch makes the daemon watch the passwd files and record an event
	// for every burst of new mailboxes.
	Watch bool `yaml:"watch"`
}

// Mailbox layouts.
const (
	MailboxDirectAdmin = "directadmin"
	MailboxDovecot     = "dovecot"
)

// DefaultRoleNames are the role addresses a mailbox audit compares local
// parts with: the names an attacker picks to look like the organisation.
func DefaultRoleNames() []string {
	return []string{"office", "services", "support", "admin", "info", "billing", "sales",
		"contact", "webmaster", "postmaster", "hostmaster", "abuse", "accounts", "finance",
		"marketing", "security", "noreply", "help"}
}

func defaultMailbox() Mailbox {
	return Mailbox{
		Layout:         MailboxDirectAdmin,
		Root:           "/etc/virtual",
		Home:           "/home",
		ManyDomains:    10,
		RoleNames:      DefaultRoleNames(),
		MaxDistance:    2,
		BurstCount:     20,
		BurstWindow:    Duration(time.Hour),
		MaxRemoveShare: 0.5,
	}
}

// MailboxPath returns a mailbox tool's directory or file: the configured
// path, or name inside data_dir when it is "".
func (c Config) MailboxPath(configured, name string) string {
	if configured != "" {
		return configured
	}
	return filepath.Join(c.DataDir, name)
}

func (c *Config) validateMailbox(add func(key, format string, args ...any)) {
	m := &c.Mailbox
	switch m.Layout {
	case MailboxDirectAdmin:
		if m.Root == "" {
			add("mailbox.root", "must be set for the directadmin layout")
		}
	case MailboxDovecot:
		if len(m.PasswdFiles) == 0 {
			add("mailbox.passwd_files", "must list at least one passwd-file for the dovecot layout")
		}
	default:
		add("mailbox.layout", "%q is not one of directadmin, dovecot", m.Layout)
	}
	for _, p := range []struct{ key, val string }{
		{"mailbox.root", m.Root},
		{"mailbox.home", m.Home},
		{"mailbox.backup_dir", m.BackupDir},
		{"mailbox.quarantine_dir", m.QuarantineDir},
		{"mailbox.snapshot", m.Snapshot},
	} {
		if p.val != "" && !filepath.IsAbs(p.val) {
			add(p.key, "path %q must be absolute", p.val)
		}
	}
	// "/" as the home would let a quarantine move any directory.
	if filepath.Clean(m.Home) == "/" {
		add("mailbox.home", "must not be /")
	}
	for i, f := range m.PasswdFiles {
		if !filepath.IsAbs(f) {
			add(fmt.Sprintf("mailbox.passwd_files[%d]", i), "path %q must be absolute", f)
		}
	}
	if m.ManyDomains < 2 {
		add("mailbox.many_domains", "%d must be 2 or more", m.ManyDomains)
	}
	for i, r := range m.RoleNames {
		if r == "" || r != strings.ToLower(r) || strings.ContainsAny(r, " \t@:") || hasControl(r) {
			add(fmt.Sprintf("mailbox.role_names[%d]", i), "%q must be a lowercase local part without spaces, @ or :", r)
		}
	}
	if m.MaxDistance < 0 || m.MaxDistance > 3 {
		add("mailbox.max_distance", "%d is out of range 0-3", m.MaxDistance)
	}
	if m.BurstCount < 2 {
		add("mailbox.burst_count", "%d must be 2 or more", m.BurstCount)
	}
	if m.BurstWindow <= 0 {
		add("mailbox.burst_window", "must be longer than 0s, got %s", human.Setting(m.BurstWindow.D()))
	}
	// NaN fails both comparisons, so it is caught here too.
	if !(m.MaxRemoveShare > 0 && m.MaxRemoveShare <= 1) {
		add("mailbox.max_remove_share", "%g must be more than 0 and at most 1", m.MaxRemoveShare)
	}
}
