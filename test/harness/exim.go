package harness

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// EximRoot is where test/setup.sh unpacks Debian 12's exim4-daemon-heavy (the
// build with content scanning: the malware ACL condition and av_scanner),
// exim4-base and exim4-config with dpkg -x. The packages conflict with
// postfix, which the other tests need, so they are never installed.
const EximRoot = "/opt/mailwarden-test/exim"

// Paths inside EximRoot, as the packages ship them.
const (
	eximBinary   = "usr/sbin/exim4"
	eximUpdate   = "usr/sbin/update-exim4.conf"
	eximStockDir = "etc/exim4"
	// EximRcptACLFile is the split-configuration file holding
	// acl_check_rcpt, relative to /etc/exim4.
	EximRcptACLFile = "conf.d/acl/30_exim4-config_check_rcpt"
	// EximTemplateFile is the single-file template update-exim4.conf
	// builds from when dc_use_split_config is false.
	EximTemplateFile = "exim4.conf.template"
	// eximUser is the exim_user compiled into Debian's exim4.
	eximUser = "Debian-exim"
	// eximListenHost is the loopback address Exim listens on. It is not
	// 127.0.0.1, where the sink listens: Exim treats a smarthost on one
	// of its own local_interfaces as itself and freezes the message
	// ("remote host address is the local host"), whatever the port.
	eximListenHost = "127.0.0.2"
)

// RequireExim skips (or fails under CI) unless the test runs as root with
// Debian's Exim unpacked by test/setup.sh and its user present.
func RequireExim(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "the Exim tests start Exim with -C and need root")
	}
	for _, f := range []string{eximBinary, eximUpdate, filepath.Join(eximStockDir, EximRcptACLFile), filepath.Join(eximStockDir, EximTemplateFile)} {
		if _, err := os.Stat(filepath.Join(EximRoot, f)); err != nil {
			SkipOrFail(t, "harness: Debian's Exim is not unpacked in %s: %v", EximRoot, err)
		}
	}
	if _, err := user.Lookup(eximUser); err != nil {
		SkipOrFail(t, "harness: Exim's system user %s is missing: %v", eximUser, err)
	}
}

// EximStockFile returns a file of Debian's stock /etc/exim4 as shipped,
// such as EximRcptACLFile.
func EximStockFile(t testing.TB, name string) string {
	t.Helper()
	RequireExim(t)
	b, err := os.ReadFile(filepath.Join(EximRoot, eximStockDir, name))
	if err != nil {
		t.Fatalf("reading Debian's stock %s: %v", name, err)
	}
	return string(b)
}

// EximConfig describes one Exim built from Debian's stock configuration
// the way an administrator of a Debian 12 smarthost gets it: the debconf
// answers below go to update-exim4.conf, which writes the single config
// file Exim runs.
type EximConfig struct {
	// SmarthostPort is the port of the smtp-sink on 127.0.0.1 that all
	// mail for other domains goes to (dc_smarthost).
	SmarthostPort int
	// RelayNets are the clients Exim relays for (dc_relay_nets), such as
	// "127.10.0.0/16"; Debian adds 127.0.0.1 and ::1 itself.
	RelayNets string
	// RelayDomains are domains Exim accepts mail for from anyone and
	// relays (dc_relay_domains).
	RelayDomains string
	// SingleFile builds from exim4.conf.template (dc_use_split_config
	// false) instead of the conf.d tree.
	SingleFile bool
	// EditRcptACL changes the stock text of the file holding
	// acl_check_rcpt (EximRcptACLFile, or EximTemplateFile when
	// SingleFile is set) and returns the new text; this is where a test
	// puts what the docs tell an administrator to add.
	EditRcptACL func(stock string) (string, error)
	// Edit changes other stock files, by name relative to /etc/exim4
	// (such as "conf.d/acl/40_exim4-config_check_data"), the same way;
	// an edit of the file EditRcptACL changes runs after it.
	Edit map[string]func(stock string) (string, error)
	// Users, if set, are SMTP AUTH users and their passwords. They turn
	// on the PLAIN server authenticator Debian ships commented out in
	// conf.d/auth/30_exim4-config_examples, reading CONFDIR/passwd.
	Users map[string]string
}

// Exim is one running Exim daemon with its own configuration, spool and
// logs under one directory.
type Exim struct {
	// Addr is the daemon's host:port.
	Addr string
	// ConfigFile is the file update-exim4.conf generated; Exim runs it
	// with -C.
	ConfigFile string
	// ConfDir is the copy of /etc/exim4 the config was built from.
	ConfDir string
	// LogDir holds mainlog, rejectlog and paniclog.
	LogDir string

	base  string
	spool string
	proc  *proc
}

// configureExim lays out an instance directory (prefix names it) and
// writes cfg's configuration there; nothing is started.
func configureExim(t testing.TB, prefix string, cfg EximConfig) *Exim {
	t.Helper()
	base := InstanceDir(t, prefix)
	e := &Exim{
		ConfDir:    filepath.Join(base, "etc"),
		ConfigFile: filepath.Join(base, "exim4.conf"),
		LogDir:     filepath.Join(base, "log"),
		base:       base,
		spool:      filepath.Join(base, "spool"),
	}
	if err := e.configure(cfg); err != nil {
		t.Fatalf("configuring Exim: %v", err)
	}
	return e
}

// StartExim builds a configuration from a copy of Debian's stock tree,
// starts "exim4 -bdf" on a free port and stops it when the test ends,
// showing its logs if the test failed.
func StartExim(t testing.TB, cfg EximConfig) *Exim {
	t.Helper()
	RequireExim(t)
	e := configureExim(t, "exim", cfg)

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePortOn(eximListenHost)
		if err != nil {
			t.Fatalf("finding a free port on %s: %v", eximListenHost, err)
		}
		e.Addr = net.JoinHostPort(eximListenHost, strconv.Itoa(port))
		// -bdf: the daemon stays in the foreground as our child, so it is
		// stopped by its own PID. -oX overrides daemon_smtp_ports; the
		// address is local_interfaces from dc_local_interfaces. No -q:
		// every message is delivered at once, and nothing here needs a
		// queue runner.
		e.proc, lastErr = startProc(filepath.Join(e.base, "exim.out"), filepath.Join(EximRoot, eximBinary),
			"-C", e.ConfigFile, "-bdf", "-oX", strconv.Itoa(port), "-oP", filepath.Join(e.base, "exim.pid"))
		if lastErr != nil {
			t.Fatal(lastErr)
		}
		lastErr = waitTCP(e.Addr, "220 ", 10*time.Second, e.proc.exited())
		if lastErr == nil {
			break
		}
		e.proc.stop(2 * time.Second) // the port was taken meanwhile: try another
	}
	if lastErr != nil {
		t.Fatalf("starting Exim: %v\n%s\n%s", lastErr, readFile(filepath.Join(e.base, "exim.out")), e.MainLog())
	}
	t.Cleanup(func() {
		if err := e.proc.stop(10 * time.Second); err != nil {
			t.Errorf("stopping Exim: %v", err)
		}
		if t.Failed() {
			t.Logf("Exim mainlog (%s):\n%s", e.LogDir, tail(e.MainLog(), 6000))
			if p := readFile(filepath.Join(e.LogDir, "paniclog")); !strings.HasPrefix(p, "(cannot read") {
				t.Logf("Exim paniclog:\n%s", tail(p, 3000))
			}
		}
	})
	return e
}

// MainLog returns what Exim has logged to its mainlog so far.
func (e *Exim) MainLog() string { return readFile(filepath.Join(e.LogDir, "mainlog")) }

// configure copies Debian's stock /etc/exim4, applies the test's edit and
// the environment adaptations below, and runs Debian's update-exim4.conf
// to write ConfigFile. Every adaptation is about where things are on a
// test machine, never about what the ACLs do.
func (e *Exim) configure(cfg EximConfig) error {
	for _, d := range []string{e.LogDir, e.spool} {
		if err := os.Mkdir(d, 0o750); err != nil {
			return err
		}
	}
	u, err := user.Lookup(eximUser)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Exim writes its spool and logs as its user, as in the package's
	// /var/spool/exim4 and /var/log/exim4.
	for _, d := range []string{e.LogDir, e.spool} {
		if err := os.Chown(d, uid, gid); err != nil {
			return err
		}
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(EximRoot, eximStockDir), e.ConfDir).CombinedOutput(); err != nil {
		return fmt.Errorf("copying the stock /etc/exim4: %v: %s", err, out)
	}
	// exim4-base's postinst makes passwd.client readable by Exim's group,
	// which dpkg -x does not do.
	os.Chown(filepath.Join(e.ConfDir, "passwd.client"), 0, gid)

	aclFile, mainFile, authFile := EximRcptACLFile, "conf.d/main/01_exim4-config_listmacrosdefs", "conf.d/auth/30_exim4-config_examples"
	if cfg.SingleFile {
		aclFile, mainFile, authFile = EximTemplateFile, EximTemplateFile, EximTemplateFile
	}
	if cfg.EditRcptACL != nil {
		if err := e.edit(aclFile, cfg.EditRcptACL); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(cfg.Edit))
	for name := range cfg.Edit {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := e.edit(name, cfg.Edit[name]); err != nil {
			return err
		}
	}
	// Adaptation: the binary is unpacked under EximRoot, not installed in
	// /usr/sbin, and Exim re-executes exim_path to deliver. The option
	// may be set only once, so the stock line is changed.
	err = e.edit(mainFile, func(s string) (string, error) {
		return replaceOnce(s, "\nexim_path = /usr/sbin/exim4\n", "\nexim_path = "+filepath.Join(EximRoot, eximBinary)+"\n")
	})
	if err != nil {
		return err
	}
	if len(cfg.Users) > 0 {
		if err := e.enableAuth(authFile, cfg.Users); err != nil {
			return err
		}
	}

	// Adaptations as local macros, in the place Debian's README.Debian
	// gives for them (conf.d/main/000_localmacros, read first; the
	// single-file build reads exim4.conf.localmacros only when it exists
	// in the real /etc/exim4, so there they head the template copy).
	macros := []string{
		"# Written by test/harness/exim.go: where things are on a test machine.",
		// /etc/mailname does not exist here (exim4-config's postinst writes
		// it), and update-exim4.conf would leave the macro empty.
		"ETC_MAILNAME = mx.test",
		"MAIN_HARDCODE_PRIMARY_HOSTNAME = mx.test",
		// CONFDIR/passwd and the other optional CONFDIR files are this copy's.
		"CONFDIR = " + e.ConfDir,
		"SPOOLDIR = " + e.spool,
		// No DNS: the test machine has no resolver to ask for client
		// host names.
		"MAIN_HOST_LOOKUP =",
		"log_file_path = " + filepath.Join(e.LogDir, "%slog"),
	}
	if len(cfg.Users) > 0 {
		// Debian's switch to offer PLAIN without TLS; the tests' swaks
		// does not start TLS.
		macros = append(macros, "AUTH_SERVER_ALLOW_NOTLS_PASSWORDS = 1")
	}
	local := strings.Join(macros, "\n") + "\n"
	if cfg.SingleFile {
		err = e.edit(EximTemplateFile, func(s string) (string, error) { return local + s, nil })
	} else {
		err = os.WriteFile(filepath.Join(e.ConfDir, "conf.d/main/000_localmacros"), []byte(local), 0o644)
	}
	if err != nil {
		return err
	}

	// The debconf answers of a smarthost ("mail sent by smarthost;
	// received via SMTP"), as /etc/exim4/update-exim4.conf.conf holds them.
	split := "true"
	if cfg.SingleFile {
		split = "false"
	}
	ue4cc := fmt.Sprintf(`# Written by test/harness/exim.go.
dc_eximconfig_configtype='smarthost'
dc_other_hostnames='mx.test'
dc_local_interfaces='%s'
dc_readhost=''
dc_relay_domains='%s'
dc_minimaldns='false'
dc_relay_nets='%s'
dc_smarthost='127.0.0.1::%d'
CFILEMODE='644'
dc_use_split_config='%s'
dc_hide_mailname=''
dc_mailname_in_oh='true'
dc_localdelivery='mail_spool'
`, eximListenHost, cfg.RelayDomains, cfg.RelayNets, cfg.SmarthostPort, split)
	if err := os.WriteFile(filepath.Join(e.ConfDir, "update-exim4.conf.conf"), []byte(ue4cc), 0o644); err != nil {
		return err
	}

	// Debian's generator, as "update-exim4.conf" runs it, but reading
	// this copy (-d) and writing ConfigFile (-o).
	cmd := exec.Command("/bin/sh", filepath.Join(EximRoot, eximUpdate), "-d", e.ConfDir, "-o", e.ConfigFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("update-exim4.conf: %v\n%s", err, out)
	}
	// Exim checks the whole file, ACLs included, before it starts.
	if out, err := exec.Command(filepath.Join(EximRoot, eximBinary), "-C", e.ConfigFile, "-bV").CombinedOutput(); err != nil {
		return fmt.Errorf("exim4 -bV rejects the generated config: %v\n%s", err, out)
	}
	return nil
}

// edit rewrites the copy of a stock file with fn.
func (e *Exim) edit(name string, fn func(string) (string, error)) error {
	path := filepath.Join(e.ConfDir, name)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s, err := fn(string(b))
	if err != nil {
		return fmt.Errorf("editing %s: %w", name, err)
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// plainServer is Debian's example PLAIN authenticator as shipped,
// commented out, in conf.d/auth/30_exim4-config_examples and the
// template.
var plainServer = []string{
	`# plain_server:`,
	`#   driver = plaintext`,
	`#   public_name = PLAIN`,
	`#   server_condition = "${if crypteq{$auth3}{${extract{1}{:}{${lookup{$auth2}lsearch{CONFDIR/passwd}{$value}{*:*}}}}}{1}{0}}"`,
	`#   server_set_id = $auth2`,
	`#   server_prompts = :`,
	`#   .ifndef AUTH_SERVER_ALLOW_NOTLS_PASSWORDS`,
	`#   server_advertise_condition = ${if eq{$tls_in_cipher}{}{}{*}}`,
	`#   .endif`,
}

// enableAuth uncomments Debian's PLAIN example unchanged and writes the
// users to CONFDIR/passwd (exim4_passwd(5): user:crypted-password), with
// passwords as crypteq's {md5} form.
func (e *Exim) enableAuth(name string, users map[string]string) error {
	err := e.edit(name, func(s string) (string, error) {
		on := make([]string, len(plainServer))
		for i, l := range plainServer {
			on[i] = strings.TrimPrefix(l, "# ")
		}
		return replaceOnce(s, strings.Join(plainServer, "\n"), strings.Join(on, "\n"))
	})
	if err != nil {
		return err
	}
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, u := range names {
		sum := md5.Sum([]byte(users[u]))
		fmt.Fprintf(&b, "%s:{md5}%s\n", u, hex.EncodeToString(sum[:]))
	}
	path := filepath.Join(e.ConfDir, "passwd")
	if err := os.WriteFile(path, []byte(b.String()), 0o640); err != nil {
		return err
	}
	// Exim checks passwords in its receiving process, as Debian-exim.
	if g, err := user.LookupGroup(eximUser); err == nil {
		gid, _ := strconv.Atoi(g.Gid)
		os.Chown(path, 0, gid)
	}
	return nil
}

// replaceOnce replaces old in s, which must occur exactly once: a stock
// file that changed shape is an error, not a silent no-op.
func replaceOnce(s, old, new string) (string, error) {
	if n := strings.Count(s, old); n != 1 {
		return "", fmt.Errorf("expected exactly one %q in the stock file, found %d", firstLine(old), n)
	}
	return strings.Replace(s, old, new, 1), nil
}

func firstLine(s string) string {
	s = strings.TrimLeft(s, "\n")
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// freePortOn returns a TCP port on host that was free a moment ago.
func freePortOn(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
