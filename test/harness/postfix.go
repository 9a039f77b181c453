package harness

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PostfixConfig describes one private Postfix instance: an MX for
// dest.test that relays everything to a sink.
type PostfixConfig struct {
	// SinkPort is the port of the smtp-sink that receives relayed mail.
	SinkPort int
	// Milter, when set, is mailwarden's milter address as host:port.
	Milter string
	// Policy, when set, is mailwarden's policy server address as host:port;
	// it is consulted at RCPT via check_policy_service.
	Policy string
	// MyNetworks defaults to 127.0.0.1/32, so the 127.x.y.z test clients
	// are outsiders to Postfix and only mailwarden decides about them.
	MyNetworks string
	// Extra main.cf lines, appended last so they win.
	Extra []string
}

// Postfix is a running private Postfix instance. Its config directory,
// queue directory and data directory are its own, and its smtpd listens
// on one loopback port only, so instances do not meet each other or the
// system Postfix.
type Postfix struct {
	// Addr is smtpd's host:port.
	Addr string
	// Port is smtpd's TCP port.
	Port int
	// ConfigDir holds main.cf and master.cf (postfix -c ConfigDir).
	ConfigDir string
	// QueueDir is the queue directory; the master's PID file is in it.
	QueueDir string
	// LogFile is Postfix's maillog_file, written by postlogd.
	LogFile string

	base    string
	postfix string
	proc    *proc
}

// StartPostfix configures and starts an instance and stops it when the
// test ends, showing its log if the test failed.
func StartPostfix(t testing.TB, cfg PostfixConfig) *Postfix {
	t.Helper()
	RequirePostfix(t)
	bin, err := Program("postfix")
	if err != nil {
		t.Fatal(err)
	}
	base := InstanceDir(t, "pf")
	p := &Postfix{
		ConfigDir: filepath.Join(base, "etc"),
		QueueDir:  filepath.Join(base, "spool"),
		LogFile:   filepath.Join(base, "maillog"),
		base:      base,
		postfix:   bin,
	}
	dataDir := filepath.Join(base, "data")
	for _, d := range []string{p.ConfigDir, p.QueueDir, dataDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("creating Postfix directory: %v", err)
		}
	}
	// data_directory must belong to mail_owner (postfix(1) check).
	if u, err := user.Lookup("postfix"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		os.Chown(dataDir, uid, -1)
	}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p.Port = FreePort(t)
		p.Addr = fmt.Sprintf("127.0.0.1:%d", p.Port)
		if err := p.writeConfig(cfg, dataDir); err != nil {
			t.Fatal(err)
		}
		if out, err := p.command("check"); err != nil {
			t.Fatalf("postfix check: %v\n%s", err, out)
		}
		// The check just ran; postfix-script skips repeating it at start
		// when this file exists (and removes it).
		os.WriteFile(filepath.Join(p.QueueDir, "quick-start"), nil, 0o644)
		if lastErr = p.start(); lastErr == nil {
			break
		}
		p.stop() // the port was taken meanwhile: try another
	}
	if lastErr != nil {
		t.Fatalf("starting Postfix: %v\n%s\n%s", lastErr, readFile(filepath.Join(base, "master.out")), readFile(p.LogFile))
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("stopping Postfix: %v", err)
		}
		if t.Failed() {
			t.Logf("Postfix log (%s):\n%s", p.LogFile, tail(readFile(p.LogFile), 6000))
		}
	})
	return p
}

// Log returns what Postfix has logged so far.
func (p *Postfix) Log() string { return readFile(p.LogFile) }

// command runs "postfix -c ConfigDir args..." with a bounded time.
func (p *Postfix) command(args ...string) (string, error) {
	cmd := exec.Command(p.postfix, append([]string{"-c", p.ConfigDir}, args...)...)
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+p.ConfigDir)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
		return string(out), err
	case <-time.After(60 * time.Second):
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
		<-done
		return string(out), fmt.Errorf("postfix %s: timed out", strings.Join(args, " "))
	}
}

// start runs the master in the foreground ("postfix start-fg", Postfix
// ≥3.3) as our child, so it is reaped here and never left behind.
func (p *Postfix) start() error {
	var err error
	p.proc, err = startProc(filepath.Join(p.base, "master.out"), p.postfix, "-c", p.ConfigDir, "start-fg")
	if err != nil {
		return err
	}
	return waitTCP(p.Addr, "220 ", 20*time.Second, p.proc.exited())
}

// stop asks the master to stop ("postfix stop"), then signals its PID from
// the instance's own PID file if it is still running.
func (p *Postfix) stop() error {
	if p.proc == nil || !p.proc.running() {
		return nil
	}
	out, err := p.command("stop")
	if p.proc.wait(15 * time.Second) {
		return nil
	}
	pidFile := filepath.Join(p.QueueDir, "pid", "master.pid")
	if b, rerr := os.ReadFile(pidFile); rerr == nil {
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	perr := p.proc.stop(5 * time.Second)
	return fmt.Errorf("postfix stop left the master running (stop: %v %s; %v)", err, strings.TrimSpace(out), perr)
}

// writeConfig writes main.cf and master.cf for this instance.
func (p *Postfix) writeConfig(cfg PostfixConfig, dataDir string) error {
	mynetworks := cfg.MyNetworks
	if mynetworks == "" {
		mynetworks = "127.0.0.1/32"
	}
	sink := fmt.Sprintf("[127.0.0.1]:%d", cfg.SinkPort)
	main := []string{
		"compatibility_level = 3.6",
		"queue_directory = " + p.QueueDir,
		"data_directory = " + dataDir,
		"mail_owner = postfix",
		"setgid_group = postdrop",
		// Daemons see only import_environment; keep Postfix's default
		// list but pin MAIL_CONFIG to this instance, whatever the test
		// process inherited.
		"import_environment = MAIL_CONFIG=" + p.ConfigDir +
			" MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME",
		"inet_interfaces = 127.0.0.1",
		"inet_protocols = ipv4",
		"myhostname = mx.test",
		"mydomain = test",
		"myorigin = mx.test",
		"mydestination =",
		"relay_domains = dest.test",
		"mynetworks = " + mynetworks,
		"relayhost = " + sink,
		"transport_maps = inline:{ dest.test=smtp:" + sink + " }",
		"local_recipient_maps =",
		"alias_maps =",
		"alias_database =",
		"biff = no",
		"smtputf8_enable = no",
		// No DNS anywhere: the machine's resolver is off limits and slow.
		"smtp_dns_support_level = disabled",
		"smtp_host_lookup = native",
		"smtpd_peername_lookup = no",
		// Log to a file of our own through postlogd (Postfix ≥3.4).
		"maillog_file = " + p.LogFile,
		"maillog_file_prefixes = " + p.base,
		// Tests retry right after a 4xx; do not make the client wait.
		"smtpd_error_sleep_time = 0",
		"smtpd_soft_error_limit = 100",
		"smtpd_hard_error_limit = 200",
		"queue_run_delay = 1s",
		"minimal_backoff_time = 1s",
		"maximal_backoff_time = 2s",
		"in_flow_delay = 0",
		"smtp_connect_timeout = 5s",
	}
	if cfg.Milter != "" {
		main = append(main,
			"smtpd_milters = inet:"+cfg.Milter,
			"non_smtpd_milters =",
			"milter_protocol = 6",
			// A milter that cannot be reached must not let mail through.
			"milter_default_action = tempfail",
			"milter_connect_timeout = 5s",
			"milter_command_timeout = 10s",
			"milter_content_timeout = 30s",
		)
	}
	if cfg.Policy != "" {
		main = append(main,
			"smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:"+cfg.Policy,
			"smtpd_policy_service_timeout = 10s",
			"smtpd_policy_service_default_action = 451 4.3.5 Policy service unavailable",
		)
	}
	main = overrideParams(append(main, cfg.Extra...))

	// Every service runs unchrooted: a chroot would need copies of
	// /etc files under the queue directory.
	master := []string{
		p.Addr + " inet n - n - - smtpd",
		"pickup unix n - n 60 1 pickup",
		"cleanup unix n - n - 0 cleanup",
		"qmgr unix n - n 300 1 qmgr",
		"rewrite unix - - n - - trivial-rewrite",
		"bounce unix - - n - 0 bounce",
		"defer unix - - n - 0 bounce",
		"trace unix - - n - 0 bounce",
		"verify unix - - n - 1 verify",
		"flush unix n - n 1000? 0 flush",
		"proxymap unix - - n - - proxymap",
		"smtp unix - - n - - smtp",
		"relay unix - - n - - smtp",
		"showq unix n - n - - showq",
		"error unix - - n - - error",
		"retry unix - - n - - error",
		"discard unix - - n - - discard",
		"anvil unix - - n - 1 anvil",
		"scache unix - - n - 1 scache",
		"postlog unix-dgram n - n - 1 postlogd",
	}
	if err := os.WriteFile(filepath.Join(p.ConfigDir, "main.cf"), []byte(strings.Join(main, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing main.cf: %w", err)
	}
	if err := os.WriteFile(filepath.Join(p.ConfigDir, "master.cf"), []byte(strings.Join(master, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing master.cf: %w", err)
	}
	return nil
}

// overrideParams keeps one line per main.cf parameter: a later line
// replaces an earlier one in its place. Postfix itself takes the last
// value too, but every one of its programs then warns "overriding
// earlier entry" each time it reads main.cf, postlogd included, which
// logs the warnings to its own socket before it reads that socket: with
// a few such lines and a busy instance it blocks for good, and so does
// every process that logs.
func overrideParams(lines []string) []string {
	at := map[string]int{}
	var out []string
	for _, l := range lines {
		name, _, ok := strings.Cut(l, "=")
		name = strings.TrimSpace(name)
		if i, seen := at[name]; ok && seen {
			out[i] = l
			continue
		}
		if ok {
			at[name] = len(out)
		}
		out = append(out, l)
	}
	return out
}
