package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SendmailRoot is where test/setup.sh unpacks Debian 12's sendmail-bin,
// sendmail-base and sendmail-cf with dpkg -x. The packages conflict with
// postfix, which the other tests need, so they are never installed.
const SendmailRoot = "/opt/mailwarden-test/sendmail"

// Paths inside SendmailRoot, as the packages ship them.
const (
	sendmailBinary = "usr/libexec/sendmail/sendmail"
	sendmailCFDir  = "usr/share/sendmail/cf"
	// sendmailHostname is the fully qualified name sendmail runs under.
	sendmailHostname = "mx.test"
)

// RequireSendmail skips (or fails under CI) unless the test runs as root
// with Debian's Sendmail unpacked by test/setup.sh, m4 to build its
// sendmail.cf and unshare(1) to give it a qualified host name.
func RequireSendmail(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "the Sendmail tests run sendmail -bD with -C and need root")
	}
	for _, f := range []string{sendmailBinary, filepath.Join(sendmailCFDir, "m4", "cf.m4")} {
		if _, err := os.Stat(filepath.Join(SendmailRoot, f)); err != nil {
			SkipOrFail(t, "harness: Debian's Sendmail is not unpacked in %s: %v", SendmailRoot, err)
		}
	}
	for _, prog := range []string{"m4", "unshare", "hostname"} {
		if _, err := exec.LookPath(prog); err != nil {
			SkipOrFail(t, "harness: %s is not installed (run test/setup.sh): %v", prog, err)
		}
	}
}

// SendmailConfig describes one Sendmail built from a sendmail.mc with
// the unpacked sendmail-cf's m4 macros.
type SendmailConfig struct {
	// SinkPort is the port of the smtp-sink on 127.0.0.1 that all mail
	// for other domains goes to (SMART_HOST).
	SinkPort int
	// RelayFrom are what Sendmail relays for, as RELAY_DOMAIN entries
	// (class R): client address prefixes such as "127.10" and recipient
	// domains such as "dest.test" it accepts mail for from anyone.
	RelayFrom []string
	// Mc is what the administrator adds to sendmail.mc, such as
	// docs/sendmail.md's snippet; it goes before the MAILER lines, where
	// sendmail.mc keeps its features and filters. The listening port is
	// the harness's.
	Mc string
}

// Sendmail is one running sendmail daemon with its own sendmail.cf and
// queue under one directory.
type Sendmail struct {
	// Addr is the daemon's host:port on 127.0.0.1.
	Addr string
	// McFile is the sendmail.mc the harness wrote; ConfigFile is the
	// sendmail.cf m4 built from it.
	McFile, ConfigFile string
	// QueueDir is the daemon's mail queue.
	QueueDir string

	base    string
	traffic string
	proc    *proc
}

// StartSendmail builds a sendmail.cf for a free loopback port, runs
// "sendmail -bD" (the daemon in the foreground, as the test's child) and
// stops it when the test ends, showing its SMTP traffic and queue if the
// test failed.
func StartSendmail(t testing.TB, cfg SendmailConfig) *Sendmail {
	t.Helper()
	RequireSendmail(t)
	base := InstanceDir(t, "sendmail")
	s := &Sendmail{
		McFile:     filepath.Join(base, "sendmail.mc"),
		ConfigFile: filepath.Join(base, "sendmail.cf"),
		QueueDir:   filepath.Join(base, "mqueue"),
		base:       base,
		traffic:    filepath.Join(base, "traffic.log"),
	}
	// Sendmail refuses a queue directory others can write to; Debian's
	// /var/spool/mqueue is root's, mode 0700.
	if err := os.Mkdir(s.QueueDir, 0o700); err != nil {
		t.Fatalf("creating the Sendmail queue: %v", err)
	}
	// The service switch sendmail reads for its own host lookups
	// (ServiceSwitchFile): /etc/hosts only, never DNS.
	if err := os.WriteFile(filepath.Join(base, "service.switch"), []byte("hosts files\naliases files\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePortOn("127.0.0.1")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := s.configure(cfg, port); err != nil {
			t.Fatalf("configuring Sendmail: %v", err)
		}
		// sendmail sleeps a minute at start when the machine's host name
		// is not fully qualified ("My unqualified host name (…) unknown;
		// sleeping for retry"), which a test machine's often is, and
		// before it reads any configuration. So it runs in its own UTS
		// namespace named mx.test: unshare and sh exec, so the PID the
		// harness stops is sendmail's. -bD: the daemon stays in the
		// foreground; -X logs every SMTP exchange, since sendmail's own
		// log goes to syslog, which a test machine may not have.
		script := fmt.Sprintf("hostname %s && exec %s -bD -C %s -X %s",
			sendmailHostname, filepath.Join(SendmailRoot, sendmailBinary), s.ConfigFile, s.traffic)
		unshare, _ := exec.LookPath("unshare")
		s.proc, lastErr = startProc(filepath.Join(base, "sendmail.out"), unshare, "--uts", "/bin/sh", "-c", script)
		if lastErr != nil {
			t.Fatal(lastErr)
		}
		lastErr = waitTCP(s.Addr, "220 ", 10*time.Second, s.proc.exited())
		if lastErr == nil {
			break
		}
		s.proc.stop(2 * time.Second) // the port was taken meanwhile: try another
	}
	if lastErr != nil {
		t.Fatalf("starting Sendmail: %v\n%s", lastErr, readFile(filepath.Join(base, "sendmail.out")))
	}
	t.Cleanup(func() {
		if err := s.proc.stop(10 * time.Second); err != nil {
			t.Errorf("stopping Sendmail: %v", err)
		}
		if t.Failed() {
			t.Logf("sendmail.mc (%s):\n%s", s.McFile, readFile(s.McFile))
			t.Logf("Sendmail output:\n%s", tail(readFile(filepath.Join(base, "sendmail.out")), 3000))
			t.Logf("Sendmail SMTP traffic (-X %s):\n%s", s.traffic, tail(s.Traffic(), 8000))
			for _, q := range s.Queue() {
				t.Logf("Sendmail queue file %s", q)
			}
		}
	})
	return s
}

// Traffic returns the SMTP exchanges sendmail has logged (-X) so far,
// with the daemon's side of its deliveries to the sink.
func (s *Sendmail) Traffic() string { return readFile(s.traffic) }

// Queue returns, for each message in the queue, its control file's
// name and the reason it is still there (its M line), if any.
func (s *Sendmail) Queue() []string {
	entries, err := os.ReadDir(s.QueueDir)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "qf") {
			continue
		}
		line := e.Name()
		for _, l := range strings.Split(readFile(filepath.Join(s.QueueDir, e.Name())), "\n") {
			if strings.HasPrefix(l, "M") {
				line += ": " + l[1:]
			}
		}
		out = append(out, line)
	}
	sort.Strings(out)
	return out
}

// configure writes sendmail.mc for port and builds sendmail.cf from it
// with m4 and sendmail-cf's macros, as "make -C /etc/mail" does. The
// lines the harness writes are about where things are on a test machine;
// what Sendmail does with mail is the test's cfg.Mc and stock defaults.
func (s *Sendmail) configure(cfg SendmailConfig, port int) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("divert(-1)")
	p("# Written by test/harness/sendmail.go.")
	p("divert(0)dnl")
	// OSTYPE(debian) includes an autoconf.m4 that sendmail-base's
	// postinst writes under /usr/share/sendmail, which dpkg -x does not
	// run; the generic linux OSTYPE needs nothing outside SendmailRoot.
	p("OSTYPE(`linux')dnl")
	p("define(`confDOMAIN_NAME', `%s')dnl", sendmailHostname)
	// Every file sendmail would keep in /etc/mail, /var/run or
	// /var/lib/sendmail is this instance's.
	p("define(`QUEUE_DIR', `%s')dnl", s.QueueDir)
	p("define(`confPID_FILE', `%s')dnl", filepath.Join(s.base, "sendmail.pid"))
	p("define(`STATUS_FILE', `%s')dnl", filepath.Join(s.base, "sendmail.st"))
	p("define(`HELP_FILE', `%s')dnl", filepath.Join(SendmailRoot, "etc/mail/helpfile"))
	p("define(`confCW_FILE', `%s')dnl", filepath.Join(s.base, "local-host-names"))
	p("define(`confSERVICE_SWITCH_FILE', `%s')dnl", filepath.Join(s.base, "service.switch"))
	p("define(`confDEAD_LETTER_DROP', `%s')dnl", filepath.Join(s.base, "dead.letter"))
	// No local delivery in these tests, hence no aliases database.
	p("undefine(`ALIAS_FILE')dnl")
	// Deliveries run as mail, which base-passwd always has (the stock
	// mailnull does not exist on Debian).
	p("define(`confDEF_USER_ID', `mail:mail')dnl")
	// No network beyond loopback: no ident, no interface probing, no
	// canonicalisation of addresses in DNS.
	p("define(`confTO_IDENT', `0')dnl")
	p("define(`confDONT_PROBE_INTERFACES', `True')dnl")
	p("FEATURE(`nocanonify')dnl")
	p("FEATURE(`accept_unresolvable_domains')dnl")
	// All mail for other domains goes to the sink.
	p("define(`SMART_HOST', `[127.0.0.1]')dnl")
	p("define(`RELAY_MAILER_ARGS', `TCP $h %d')dnl", cfg.SinkPort)
	p("define(`ESMTP_MAILER_ARGS', `TCP $h %d')dnl", cfg.SinkPort)
	for _, r := range cfg.RelayFrom {
		p("RELAY_DOMAIN(`%s')dnl", r)
	}
	// One listener on the test's port instead of 25 and the MSA on 587.
	p("FEATURE(`no_default_msa')dnl")
	p("DAEMON_OPTIONS(`Port=%d, Addr=127.0.0.1, Name=MTA')dnl", port)
	b.WriteString(strings.TrimRight(cfg.Mc, "\n") + "\n")
	p("MAILER(`local')dnl")
	p("MAILER(`smtp')dnl")
	if err := os.WriteFile(s.McFile, []byte(b.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.base, "local-host-names"), nil, 0o644); err != nil {
		return err
	}

	cfDir := filepath.Join(SendmailRoot, sendmailCFDir)
	cmd := exec.Command("m4", "-D_CF_DIR_="+cfDir+"/", filepath.Join(cfDir, "m4", "cf.m4"), s.McFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("m4 %s: %v\n%s", s.McFile, err, stderr.String())
	}
	if strings.Contains(stderr.String(), "ERROR") {
		return fmt.Errorf("m4 %s reports errors:\n%s", s.McFile, stderr.String())
	}
	return os.WriteFile(s.ConfigFile, out, 0o644)
}
