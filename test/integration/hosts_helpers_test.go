package integration_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// Shared by the suspect-host tests (issue 5): the worm trap, the backdoor
// scanner, the mail login log and `mailwarden hosts`.

// trapYAML is the trap section for a trap on addr that flushes its hits
// to the store every second, so the tests wait at most about that long.
func trapYAML(addr string) string {
	return fmt.Sprintf(`trap:
  enabled: true
  listen: %q
  max_conns: 256
  max_per_ip: 8
  read_timeout: 5s
  session_timeout: 10s
  flush_interval: 1s`, addr)
}

// scanYAML is the scan section for ranges and one port, on demand only.
func scanYAML(port int, ranges ...string) string {
	q := make([]string, len(ranges))
	for i, r := range ranges {
		q[i] = strconv.Quote(r)
	}
	return fmt.Sprintf(`scan:
  ranges: [%s]
  ports: [%d]
  concurrency: 8
  rate: 500
  timeout: 1s`, strings.Join(q, ", "), port)
}

// mailLoginYAML is the mail_login section following log.
func mailLoginYAML(log string) string {
	return fmt.Sprintf("mail_login:\n  log: %q\n  poll: 200ms", log)
}

// trapAddr returns a fresh loopback address for a trap.
func trapAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
}

// trapSession connects to the trap from src as a worm does: HELO helo,
// MAIL FROM from. It returns the greeting and the replies to both
// commands, and fails the test unless the trap then closes the
// connection.
func trapSession(t *testing.T, trap, src, helo, from string) (greeting, heloReply, mailReply string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", trap)
	if err != nil {
		t.Fatalf("connecting to the trap %s from %s: %v", trap, src, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	read := func(what string) string {
		t.Helper()
		r, err := readReply(br)
		if err != nil {
			t.Fatalf("trap from %s: reading the reply to %s: %v", src, what, err)
		}
		return r
	}
	greeting = read("the connection")
	fmt.Fprintf(c, "HELO %s\r\n", helo)
	heloReply = read("HELO")
	fmt.Fprintf(c, "MAIL FROM:<%s>\r\n", from)
	mailReply = read("MAIL FROM")
	if line, err := br.ReadString('\n'); err == nil {
		t.Errorf("trap from %s: after %q the trap sent %q instead of closing", src, mailReply, line)
	}
	return greeting, heloReply, mailReply
}

// readReply reads one SMTP reply, joining continuation lines (RFC 5321
// §4.2.1), without the final CRLF.
func readReply(br *bufio.Reader) (string, error) {
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return strings.Join(append(lines, line), "\n"), err
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(lines, "\n"), nil
		}
	}
}

// requireTrapped checks the trap's side of one session: a 220 greeting,
// 250 to HELO and a 451 4.7.1 to MAIL FROM.
func requireTrapped(t *testing.T, src, greeting, helo, mail string) {
	t.Helper()
	if !strings.HasPrefix(greeting, "220 ") || !strings.HasPrefix(helo, "250 ") || !strings.HasPrefix(mail, "451 4.7.1 ") {
		t.Errorf("trap from %s replied %q, %q, %q; want 220, 250 and 451 4.7.1", src, greeting, helo, mail)
	}
}

// hostShow runs `hosts show IP --json`; ok is false when the command
// fails, as it does for a host with no evidence yet.
func hostShow(t *testing.T, mw *harness.Mailwarden, ip string) (h map[string]any, res harness.CLIResult, ok bool) {
	t.Helper()
	res = mw.CLI(t, "hosts", "show", ip, "--json")
	if res.ExitCode != 0 {
		return nil, res, false
	}
	return jsonObject(t, "hosts show", res.Stdout), res, true
}

// waitHost polls `hosts show IP --json` for up to timeout until cond
// holds and returns the host.
func waitHost(t *testing.T, mw *harness.Mailwarden, ip, what string, timeout time.Duration, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h, res, ok := hostShow(t, mw, ip)
		if ok && cond(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts show %s does not show %s within %v:\nexit %d\nstdout:\n%s\nstderr:\n%s", ip, what, timeout, res.ExitCode, res.Stdout, res.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lookup returns the value of the first key, in obj or in an object nested
// in it, whose name matches one of names without regard to case or
// underscores; JSON field names are the CLI's choice.
func lookup(obj map[string]any, names ...string) any {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	for _, name := range names {
		for k, v := range obj {
			if norm(k) == norm(name) && v != nil {
				return v
			}
		}
	}
	for _, v := range obj {
		if inner, ok := v.(map[string]any); ok {
			if found := lookup(inner, names...); found != nil {
				return found
			}
		}
	}
	return nil
}

// text renders a looked-up value as text ("" for nil).
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// number renders a looked-up value as an int (-1 when it is not one).
func number(v any) int {
	if f, ok := v.(float64); ok {
		return int(f)
	}
	if n, err := strconv.Atoi(text(v)); err == nil {
		return n
	}
	return -1
}

// evidence returns a host's evidence count of kind (0 when absent).
func evidence(h map[string]any, kind string) int {
	ev, _ := lookup(h, "evidence").(map[string]any)
	if n := number(ev[kind]); n > 0 {
		return n
	}
	return 0
}

// trapOf returns the host's trap record.
func trapOf(h map[string]any) map[string]any {
	m, _ := h["trap"].(map[string]any)
	if m == nil {
		m, _ = lookup(h, "trap_record", "trap").(map[string]any)
	}
	return m
}

// lastUser returns who last read mail from the host.
func lastUser(h map[string]any) string {
	switch v := lookup(h, "last_login", "last_mail_login", "mail_login", "login").(type) {
	case map[string]any:
		return text(lookup(v, "user"))
	case string:
		return v
	}
	return text(lookup(h, "last_user", "user"))
}

// openPort reports whether the host shows port open.
func openPort(h map[string]any, port int) bool {
	list, _ := lookup(h, "open_ports", "ports", "openports").([]any)
	for _, p := range list {
		switch p := p.(type) {
		case float64:
			if int(p) == port {
				return true
			}
		case map[string]any:
			if number(lookup(p, "port")) == port && text(lookup(p, "open")) != "false" {
				return true
			}
		}
	}
	return false
}

// vmRSS returns the resident set size of process pid in kB.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the daemon's memory use: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("parsing %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no VmRSS", pid)
	return 0
}

// dovecotLogin is a Dovecot IMAP login line for user from ip at when.
func dovecotLogin(when time.Time, user, ip string) string {
	return fmt.Sprintf("%s mail dovecot[1834]: imap-login: Login: user=<%s>, method=PLAIN, rip=%s, lip=127.0.0.1, mpid=4242, TLS, session=<Tt9CNkMOIAENuAAQ>\n",
		when.UTC().Format("2006-01-02T15:04:05.000000+00:00"), user, ip)
}

// appendLines appends text to the file at path.
func appendLines(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatalf("appending to %s: %v", path, err)
	}
}

// listener accepts connections on addr and closes them, standing for a
// backdoor port left open by a worm, until the test ends.
func listener(t *testing.T, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}
