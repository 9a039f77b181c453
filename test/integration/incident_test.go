package integration_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/mailbox/mailboxtest"
	"mailwarden/test/harness"
)

// TestIncident is the worst day on one screen, against the real daemon:
// two machines latched for forgeries through the policy server, an
// outbound freeze, a spam run sitting in a real Postfix queue and a burst
// of planted mailboxes since the last snapshot. `mailwarden incident`
// (text and --json) and the dashboard's /incident page (Chromium, as an
// admin and as a viewer) must show every section, right, with the
// commands and forms that act on each.
func TestIncident(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	source, err := harness.Program("smtp-source")
	if err != nil {
		harness.SkipOrFail(t, "%v", err)
	}
	postqueue, err := harness.Program("postqueue")
	if err != nil {
		harness.SkipOrFail(t, "%v", err)
	}
	postsuper, err := harness.Program("postsuper")
	if err != nil {
		harness.SkipOrFail(t, "%v", err)
	}
	// With the queue manager disabled, accepted mail stays queued.
	p := harness.StartPostfix(t, harness.PostfixConfig{
		SinkPort: harness.FreePort(t),
		Extra:    []string{"master_service_disable = qmgr/unix"},
	})
	const spam = 25
	if out, err := exec.Command(source, "-m", fmt.Sprint(spam), "-s", "5", "-f", "office@victim-one.example",
		"-t", "x@gmail.test", p.Addr).CombinedOutput(); err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}

	dir := harness.InstanceDir(t, "incident")
	tr, err := mailboxtest.Generate(filepath.Join(dir, "srv"), mailboxtest.Options{Domains: 20, Seed: 14, MailDirs: true, UID: -1})
	if err != nil {
		t.Fatal(err)
	}
	mw := harness.StartMailwarden(t, bin, siteYAML("127.0.53.0/24")+fmt.Sprintf(`
queue:
  mta: postfix
  postqueue: %s
  postsuper: %s
  config_directory: %s
mailbox:
  root: %q
  home: %q
  watch: true
  burst_count: 5
  burst_window: 1m
`, postqueue, postsuper, p.ConfigDir, tr.Root, tr.Home))
	mw.WaitStderr(t, 0, func(line string) bool { return strings.Contains(line, "mailbox watch started") }, 10*time.Second)

	// Before: a snapshot in the daemon's data directory, as cron takes.
	if res := mw.CLI(t, "mailbox", "snapshot"); res.ExitCode != 0 {
		t.Fatalf("mailbox snapshot: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	planted, err := tr.Attack(mailboxtest.AttackOptions{Count: 8, Domains: 8})
	if err != nil {
		t.Fatal(err)
	}
	latched := []string{"127.0.53.5", "127.0.53.6"}
	ids := map[string]string{}
	for _, client := range latched {
		if action := policyAsk(t, mw.PolicyAddr, client, "worm@evil.test"); !strings.HasPrefix(action, "action=550") &&
			!strings.HasPrefix(action, "action=REJECT") {
			t.Fatalf("forged sender from %s: policy answered %q, want a rejection", client, action)
		}
		ids[client] = field(waitLatch(t, mw, client), "id")
	}
	cliOK(t, mw, "freeze", "on", "--domain", "victim-one.example", "--note", "spam run")
	waitEvent(t, mw, func(e map[string]any) bool { return field(e, "kind") == "mailbox" }, "--kind", "mailbox")

	t.Run("cli", func(t *testing.T) {
		res := mw.CLIWords(t, 1, "incident")
		if res.ExitCode != 0 {
			t.Fatalf("incident: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
		}
		out := res.Stdout
		want := []string{
			"== Outbound freeze ==", "FROZEN: sender domain victim-one.example", "spam run",
			`$ mailwarden freeze off --domain victim-one.example --note "…"`,
			"== Active latches (2) ==", ids[latched[0]], ids[latched[1]], "$ mailwarden latch clear ",
			"== Latched and suspect hosts (2) ==", "site " + siteName + " (2):", latched[0], latched[1],
			`$ mailwarden hosts disinfect 127.0.53.`,
			"== Top senders in the last 1h", "worm@evil.test",
			"== MTA queue ==", fmt.Sprintf("%d messages", spam), "office@victim-one.example",
			"$ mailwarden queue purge --sender office@victim-one.example",
			"== New mailboxes ==", fmt.Sprintf("%d of ", len(planted)), planted[0], "burst ",
			"$ mailwarden mailbox audit --json > audit.json",
			"== Rate trips in the last 1h (0) ==",
			"== Antivirus ==", "disabled",
			"== Store ==", "sqlite, writing",
			"== Open alerts (0) ==", "alerts are not configured",
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("incident lacks %q:\n%s", w, out)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		res := mw.CLIWords(t, 1, "incident", "--json")
		var in struct {
			Freezes struct{ Freezes []map[string]any }
			Latches struct{ Latches []map[string]any }
			Hosts   struct {
				Total int
				Sites []struct {
					Site  string
					Hosts []map[string]any
				}
			}
			Queue struct {
				Available bool
				Summary   struct{ Messages int }
			}
			Mailboxes struct {
				HasSnapshot bool `json:"has_snapshot"`
				NewCount    int  `json:"new_count"`
				New         []string
			}
			Alerts struct{ Configured bool }
		}
		if err := json.Unmarshal([]byte(res.Stdout), &in); res.ExitCode != 0 || err != nil {
			t.Fatalf("incident --json: exit %d, %v\n%s", res.ExitCode, err, res.Stderr)
		}
		if len(in.Freezes.Freezes) != 1 || len(in.Latches.Latches) != 2 || in.Hosts.Total != 2 ||
			len(in.Hosts.Sites) != 1 || in.Hosts.Sites[0].Site != siteName || !in.Queue.Available ||
			in.Queue.Summary.Messages != spam || !in.Mailboxes.HasSnapshot || in.Mailboxes.NewCount != len(planted) ||
			in.Alerts.Configured {
			t.Errorf("incident --json: %+v", in)
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		d := newDashboard(t, mw)
		admin := d.loginAs(t, adminName, adminPass, "admin")
		viewer := d.loginAs(t, viewName, viewPass, "viewer")
		defer requireNoDialogs(t, admin, viewer)
		admin.Navigate(t, d.url("/"))
		admin.ClickAndWait(t, `#overview-incident a[href="/incident"]`)
		d.requirePath(t, admin, "/incident")
		sections := []string{"freeze", "latches", "hosts", "senders", "queue", "mailboxes", "ratetrips", "antivirus", "store", "alerts"}
		for _, page := range []*harness.Page{admin, viewer} {
			page.Navigate(t, d.url("/incident"))
			for _, s := range sections {
				if page.Count(t, "#incident-"+s) != 1 {
					t.Errorf("the incident page lacks the %s section", s)
				}
			}
			if n := page.Count(t, "#incident-latches tr.latch"); n != 2 {
				t.Errorf("%d latches on the incident page, want 2", n)
			}
			if got := page.Text(t, "#incident-new-mailboxes"); got != fmt.Sprint(len(planted)) {
				t.Errorf("new mailboxes %q, want %d", got, len(planted))
			}
			if !strings.Contains(page.Text(t, "#incident-queue"), fmt.Sprintf("%d messages", spam)) {
				t.Errorf("queue section: %q", page.Text(t, "#incident-queue"))
			}
		}
		// Admins act from the page; viewers only read it.
		for sel, want := range map[string][2]int{
			"#incident-latches form.clear-latch":              {2, 0},
			`#incident-hosts a[href$="#disinfect-form"]`:      {2, 0},
			`#incident-queue a[href^="/queue/purge?"]`:        {1, 0},
			"#incident-freeze-action":                         {1, 0},
			"#incident-freeze code.command":                   {1, 0},
			`#incident-hosts a[href="/hosts?status=latched"]`: {1, 1},
		} {
			if got := [2]int{admin.Count(t, sel), viewer.Count(t, sel)}; got != want {
				t.Errorf("%s: admin and viewer see %v, want %v", sel, got, want)
			}
		}
		// The clear form on the page clears the latch and comes back.
		admin.Navigate(t, d.url("/incident"))
		admin.SetValue(t, fmt.Sprintf(`#incident-latches tr[data-id=%q] input[name=note]`, ids[latched[0]]), "reimaged")
		admin.Submit(t, fmt.Sprintf(`#incident-latches tr[data-id=%q] form`, ids[latched[0]]))
		d.requirePath(t, admin, "/incident")
		if n := admin.Count(t, "#incident-latches tr.latch"); n != 1 {
			t.Errorf("%d latches after clearing one from the incident page, want 1", n)
		}
	})
}

// policyAsk sends one Postfix policy request (SMTPD_POLICY_README) for
// a message from client with the given sender and returns the answer's
// action line.
func policyAsk(t *testing.T, addr, client, sender string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=%s\nclient_name=unknown\n"+
		"helo_name=pc.school.test\nsender=%s\nrecipient=%s\n\n", client, sender, rcptTo)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("policy answer for %s: %v", client, err)
	}
	return strings.TrimSpace(line)
}
