package integration_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// The end-to-end benchmark (issue 16): mail through a real Postfix, as an
// administrator sees it. smtp-source sends N messages over S parallel
// SMTP sessions (one message per connection, as most clients do) to a
// private Postfix that relays to smtp-sink; the figure is how many
// messages Postfix accepted (or refused) per second, for each way the
// mail can be filtered, measured in alternating rounds in one run:
//
//	nofilter       Postfix alone
//	raw-eom-delack a no-op milter on the raw protocol (bench/cmd/rawmilter)
//	               that asks only for end of message and leaves the
//	               kernel's delayed ACKs on, as most milters do
//	raw-eom        the same with quick ACKs: the least any milter can ask
//	               of Postfix
//	raw-noop       the raw no-op milter (quick ACKs) negotiating exactly
//	               what mailwarden's milter negotiates without antivirus:
//	               the ceiling for mailwarden
//	mw-in          mailwarden's milter, every check but antivirus, inbound
//	               mail (greylisting: the triplet has passed once)
//	mw-in-unix     the same over a Unix socket instead of loopback TCP
//	mw-out         the same for outbound mail from a site (sender
//	               forgery incl. header From, latch, rate limits, freeze)
//	mw-policy      mailwarden as Postfix policy service only (inbound)
//	raw-noop-av    the raw no-op milter negotiating what mailwarden's
//	               milter negotiates with antivirus on
//	mw-av          mailwarden's milter with antivirus on every message
//	               (no scan cache for clean parts: every message is
//	               scanned, as the other scanners do)
//	mw-av-worm     mw-av's setup with its default scan cache, 10% of the
//	               messages one repeated worm attachment (EICAR)
//	clamav-milter  and rspamd: the same load through the systems users
//	               would pick instead (../shared/bench/anchors.sh; only
//	               when E2E_ANCHORS names that script)
//
// Run as root with make bench-e2e, or:
//
//	E2E_ANCHORS=$PWD/../shared/bench/anchors.sh go test ./test/integration \
//	  -run '^$' -bench BenchmarkE2E -benchtime 1x -timeout 60m -v
//
// E2E_N (3000), E2E_N_LARGE (1000, for 100 KB), E2E_SESSIONS (20),
// E2E_ROUNDS (2) and E2E_PATHS (comma-separated names) change the load;
// E2E_PROFILES=DIR writes a CPU profile of each mailwarden to DIR.
func BenchmarkE2E(b *testing.B) {
	o := e2eOptions{
		N: envInt(b, "E2E_N", 3000), NLarge: envInt(b, "E2E_N_LARGE", 1000),
		Sessions: envInt(b, "E2E_SESSIONS", 20), Rounds: envInt(b, "E2E_ROUNDS", 2),
		Anchors: os.Getenv("E2E_ANCHORS"), Profiles: os.Getenv("E2E_PROFILES"),
	}
	if p := os.Getenv("E2E_PATHS"); p != "" {
		o.Paths = strings.Split(p, ",")
	}
	if o.Profiles != "" {
		// Made here rather than failing the first mailwarden's start
		// minutes into the run.
		if err := os.MkdirAll(o.Profiles, 0o755); err != nil {
			b.Fatalf("E2E_PROFILES: %v", err)
		}
	}
	for range b.N {
		runE2E(b, o)
	}
}

// TestE2EBenchmarkRuns runs the benchmark on a small count, so make test
// shows it still works; its figures mean nothing. It checks what the
// benchmark takes for granted: every message the load sent was accepted
// and delivered, the worm messages were refused, and mailwarden really
// was in the path.
func TestE2EBenchmarkRuns(t *testing.T) {
	runE2E(t, e2eOptions{N: 20, NLarge: 5, Sessions: 4, Rounds: 1})
}

type e2eOptions struct {
	N, NLarge, Sessions, Rounds int
	// Anchors is the path of ../shared/bench/anchors.sh; empty leaves
	// clamav-milter and rspamd out.
	Anchors string
	// Paths limits the run to these paths; empty runs all.
	Paths []string
	// Profiles, if set, is a directory for a CPU profile of each
	// mailwarden in the run (PATH.pprof).
	Profiles string
}

// e2ePath is one way through Postfix.
type e2ePath struct {
	name string
	pf   *harness.Postfix
	// mw is the mailwarden in the path, for its CPU time and decisions.
	mw *harness.Mailwarden
	// worm is the share of messages carrying the worm attachment.
	worm float64
	// from is the envelope sender the load uses.
	from string
	// warmed counts the messages relayed before the load, relayed
	// those of the load.
	warmed, relayed int
}

// e2eResult is one load through one path.
type e2eResult struct {
	msgs, refused int
	took          time.Duration
	cpu           float64 // mailwarden's CPU seconds, if in the path
}

func (r e2eResult) rate() float64 { return float64(r.msgs) / r.took.Seconds() }

const (
	e2eRcpt    = "bench@dest.test"
	e2eInFrom  = "sender@outside.example"
	e2eOutFrom = "user@school.test"
	e2eSiteNet = "127.0.0.0/8"
	e2eNoSite  = "10.250.0.0/16"
	e2eDelay   = time.Second
	// e2eNoClean is the antivirus setting that caches no clean verdict:
	// every message goes to clamd, as with the other scanners.
	e2eNoClean  = "cache: {clean_min_size: 1000000000}"
	e2eSmallMsg = 2048
	e2eLargeMsg = 100 * 1024
)

func runE2E(tb testing.TB, o e2eOptions) {
	bin := binary(tb)
	for _, p := range []string{"smtp-source", "smtp-sink"} {
		if _, err := harness.Program(p); err != nil {
			harness.SkipOrFail(tb, "%v", err)
		}
	}
	want := func(name string) bool {
		if len(o.Paths) == 0 {
			return true
		}
		for _, p := range o.Paths {
			if p == name {
				return true
			}
		}
		return false
	}
	sink := harness.StartNullSink(tb)
	_, sinkPort := splitAddr(tb, sink.Addr)
	postfix := func(milter, policy string) *harness.Postfix {
		var extra []string
		if path, ok := strings.CutPrefix(milter, "unix:"); ok {
			milter, extra = "127.0.0.1:1", []string{"smtpd_milters = unix:" + path}
		}
		return harness.StartPostfix(tb, harness.PostfixConfig{SinkPort: sinkPort, Milter: milter, Policy: policy,
			Extra: append(extra,
				// docs/postfix.md's settings; one message per
				// connection, so nothing waits between them.
				"milter_default_action = tempfail",
				"milter_command_timeout = 30s",
				"milter_content_timeout = 300s",
				"smtpd_client_connection_count_limit = 0",
				"smtpd_client_connection_rate_limit = 0",
				"smtpd_client_message_rate_limit = 0",
			)})
	}
	var paths []*e2ePath
	add := func(name string, start func() *e2ePath) {
		if want(name) {
			if o.Profiles != "" {
				// Read by the mailwarden the path starts (cmd/mailwarden
				// serve), written when it stops.
				os.Setenv("MAILWARDEN_CPUPROFILE", filepath.Join(o.Profiles, name+".pprof"))
				defer os.Unsetenv("MAILWARDEN_CPUPROFILE")
			}
			p := start()
			p.name = name
			if p.from == "" {
				p.from = e2eInFrom
			}
			paths = append(paths, p)
		}
	}
	clamd := func() *harness.Clamd {
		harness.RequireClamd(tb)
		// As many scanning threads as the reference systems' clamd
		// (../shared/bench/anchors.sh) has.
		c, err := harness.LaunchClamd(harness.ClamdConfig{MaxThreads: envInt(tb, "E2E_CLAMD_THREADS", 10)})
		if err != nil {
			tb.Fatalf("starting clamd: %v", err)
		}
		tb.Cleanup(func() { c.Close() })
		return c
	}
	var cd *harness.Clamd
	avLines := func(extra ...string) string {
		if cd == nil {
			cd = clamd()
		}
		lines := append([]string{"enabled: true", servers(cd.TCPServer())}, extra...)
		var b strings.Builder
		b.WriteString("antivirus:\n")
		for _, l := range lines {
			if l != "" {
				b.WriteString("  " + l + "\n")
			}
		}
		return b.String()
	}
	inbound := fmt.Sprintf("internal_networks: [%q]\ngreylist:\n  delay: %s\n", e2eNoSite, e2eDelay)
	// The site's one client sends thousands of messages: the limits are
	// counted but never reached.
	outbound := siteYAML(e2eSiteNet, `rate_limits:
  client: {messages: 10000000, recipients: 10000000, per: 1h}
  sender_domain: {messages: 10000000, recipients: 10000000, per: 1h}
  user: {messages: 10000000, recipients: 10000000, per: 1h}`)
	// newMW writes a mailwarden's config as an administrator's would be:
	// the harness's debug logging off.
	newMW := func(yaml string) *harness.Mailwarden {
		mw := harness.NewMailwarden(tb, bin, yaml)
		writeFile(tb, mw.ConfigFile, strings.Replace(readFileT(tb, mw.ConfigFile), "level: debug", "level: info", 1))
		return mw
	}
	mwPath := func(yaml string, milter, policy bool, from string) *e2ePath {
		mw := newMW(yaml)
		mw.Start(tb)
		var m, p string
		if milter {
			m = mw.MilterAddr
		}
		if policy {
			p = mw.PolicyAddr
		}
		return &e2ePath{pf: postfix(m, p), mw: mw, from: from}
	}
	rawmilter := buildBenchTool(tb, "rawmilter")

	rawPath := func(args ...string) *e2ePath {
		addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(tb))
		harness.StartDaemon(tb, "rawmilter", addr, "", rawmilter, append([]string{"-addr", addr}, args...)...)
		return &e2ePath{pf: postfix(addr, "")}
	}
	add("nofilter", func() *e2ePath { return &e2ePath{pf: postfix("", "")} })
	add("raw-eom-delack", func() *e2ePath { return rawPath("-eom-only") })
	add("raw-eom", func() *e2ePath { return rawPath("-eom-only", "-quickack") })
	var mwIn, mwAV *e2ePath
	add("mw-in", func() *e2ePath { mwIn = mwPath(inbound, true, false, ""); return mwIn })
	add("raw-noop", func() *e2ePath {
		if mwIn == nil {
			mwIn = mwPath(inbound, true, false, "")
		}
		return rawPath("-like", mwIn.mw.MilterAddr, "-quickack")
	})
	add("mw-in-unix", func() *e2ePath {
		// The milter on a Unix socket, which Postfix's smtpd (user
		// postfix) may use.
		sock := filepath.Join(harness.InstanceDir(tb, "mwsock"), "milter.sock")
		mw := newMW(inbound)
		cfg := readFileT(tb, mw.ConfigFile)
		cfg = strings.Replace(cfg, fmt.Sprintf("milter: %q", mw.MilterAddr), fmt.Sprintf("milter: %q", "unix:"+sock), 1)
		writeFile(tb, mw.ConfigFile, cfg)
		mw.MilterAddr = "unix:" + sock
		mw.Start(tb)
		if err := os.Chmod(sock, 0o666); err != nil {
			tb.Fatal(err)
		}
		return &e2ePath{pf: postfix(mw.MilterAddr, ""), mw: mw}
	})
	add("mw-out", func() *e2ePath { return mwPath(outbound, true, false, e2eOutFrom) })
	add("mw-policy", func() *e2ePath { return mwPath(inbound, false, true, "") })
	add("mw-av", func() *e2ePath { mwAV = mwPath(inbound+avLines(e2eNoClean), true, false, ""); return mwAV })
	add("raw-noop-av", func() *e2ePath {
		if mwAV == nil {
			mwAV = mwPath(inbound+avLines(e2eNoClean), true, false, "")
		}
		return rawPath("-like", mwAV.mw.MilterAddr, "-quickack")
	})
	add("mw-av-worm", func() *e2ePath {
		p := mwPath(inbound+avLines(), true, false, "")
		p.worm = 0.1
		return p
	})
	if o.Anchors != "" {
		if out, err := exec.Command("bash", o.Anchors).CombinedOutput(); err != nil {
			tb.Fatalf("%s: %v\n%s", o.Anchors, err, out)
		}
		add("clamav-milter", func() *e2ePath { return &e2ePath{pf: postfix("127.0.0.1:17357", "")} })
		add("rspamd", func() *e2ePath { return &e2ePath{pf: postfix("127.0.0.1:11332", "")} })
	}

	worm := []byte(strings.ReplaceAll(wormMessage(), "\n", "\r\n"))
	// Greylisting: the inbound triplet is deferred once and passes
	// after the delay, the steady state for a correspondent mailwarden
	// already knows.
	for _, p := range paths {
		if p.mw != nil && p.from == e2eInFrom {
			greylistWarmUp(tb, p)
			p.warmed = 1
		}
	}

	type key struct {
		path string
		size int
	}
	results := map[key][]e2eResult{}
	sizes := []int{e2eSmallMsg, e2eLargeMsg}
	for _, size := range sizes {
		n := o.N
		if size == e2eLargeMsg {
			n = o.NLarge
		}
		for round := 0; round < o.Rounds; round++ {
			for _, p := range paths {
				r := e2eLoad(tb, p, n, o.Sessions, size, worm)
				// Postfix relays to the sink after it accepted; the
				// next path is measured once this one's queue is empty,
				// so that it does not pay for this one's deliveries.
				p.relayed += r.msgs - r.refused
				waitRelayed(tb, p, p.relayed+p.warmed)
				tb.Logf("round %d, %d bytes, %-13s %4d msgs in %6.2fs: %6.1f msg/s", round+1, size, p.name, r.msgs, r.took.Seconds(), r.rate())
				results[key{p.name, size}] = append(results[key{p.name, size}], r)
			}
		}
	}

	// Every message was accepted and relayed to the sink (waitRelayed
	// above), or refused if it carried the worm.
	for _, p := range paths {
		refused := 0
		for _, size := range sizes {
			for _, r := range results[key{p.name, size}] {
				refused += r.refused
			}
		}
		if p.mw != nil && p.worm > 0 {
			n := 0
			for _, d := range p.mw.Decisions() {
				if d["check"] == "antivirus" && d["action"] == "reject" {
					n++
				}
			}
			if n != refused {
				tb.Errorf("%s: mailwarden refused %d messages for a virus, want the %d worm messages", p.name, n, refused)
			}
		}
	}

	// The report: the best round of each (the least disturbed by the
	// machine), with ratios against Postfix alone and the raw no-op
	// milter, and mailwarden's CPU per 1,000 messages.
	var report strings.Builder
	fmt.Fprintf(&report, "end to end through Postfix: %d sessions, %d rounds, msgs %d (2 KB) / %d (100 KB)\n", o.Sessions, o.Rounds, o.N, o.NLarge)
	fmt.Fprintf(&report, "%-14s %8s %10s %10s %10s %14s\n", "path", "size", "msg/s", "/nofilter", "/raw-noop", "CPU s/1000msg")
	best := func(name string, size int) (e2eResult, bool) {
		rs := results[key{name, size}]
		if len(rs) == 0 {
			return e2eResult{}, false
		}
		b := rs[0]
		for _, r := range rs[1:] {
			if r.rate() > b.rate() {
				b = r
			}
		}
		return b, true
	}
	ratio := func(r e2eResult, name string, size int) string {
		ref, ok := best(name, size)
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%.2fx", r.rate()/ref.rate())
	}
	for _, size := range sizes {
		for _, p := range paths {
			r, _ := best(p.name, size)
			cpu := "-"
			if p.mw != nil {
				cpu = fmt.Sprintf("%.2f", r.cpu/float64(r.msgs)*1000)
			}
			fmt.Fprintf(&report, "%-14s %7dK %10.1f %10s %10s %14s\n", p.name, size/1024, r.rate(), ratio(r, "nofilter", size), ratio(r, "raw-noop", size), cpu)
			if b, ok := tb.(*testing.B); ok {
				b.ReportMetric(r.rate(), fmt.Sprintf("%s_%dK_msg/s", p.name, size/1024))
			}
		}
	}
	// Issue 16's aims, each a ratio of two paths in this run.
	aims := []struct {
		path, ref string
		aim       float64
	}{
		{"mw-in", "nofilter", 0.9}, {"mw-in", "raw-noop", 0.97},
		{"mw-in-unix", "nofilter", 0.9}, {"mw-policy", "nofilter", 0.9},
		{"mw-av", "rspamd", 1.5}, {"mw-av", "clamav-milter", 3},
		{"mw-av-worm", "mw-in", 0.8},
	}
	report.WriteString("aims:\n")
	for _, size := range sizes {
		for _, a := range aims {
			r, ok1 := best(a.path, size)
			ref, ok2 := best(a.ref, size)
			if ok1 && ok2 {
				fmt.Fprintf(&report, "  %3dK %-10s / %-13s %.2fx (aim >= %.2gx)\n", size/1024, a.path, a.ref, r.rate()/ref.rate(), a.aim)
			}
		}
	}
	if o.Profiles != "" {
		fmt.Fprintf(&report, "CPU profiles (written as each mailwarden stops): %s/PATH.pprof\n", o.Profiles)
	}
	tb.Logf("\n%s", report.String())
}

// e2eLoad sends n messages of size bytes through p over sessions
// parallel SMTP sessions with smtp-source and times it. A share p.worm
// of them, over their own sessions, is the worm message, sent by
// sendWorms: smtp-source stops at the first refused message.
func e2eLoad(tb testing.TB, p *e2ePath, n, sessions, size int, worm []byte) e2eResult {
	tb.Helper()
	source, _ := harness.Program("smtp-source")
	bad := int(float64(n) * p.worm)
	badSessions := 0
	if bad > 0 {
		badSessions = max(1, int(float64(sessions)*p.worm))
		sessions = max(1, sessions-badSessions)
	}
	cpu0 := mwCPU(tb, p)
	start := time.Now()
	var refused int
	var wormErr error
	var wg sync.WaitGroup
	if bad > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			refused, wormErr = sendWorms(p.pf.Addr, p.from, worm, bad, badSessions)
		}()
	}
	out, err := exec.Command(source, "-s", strconv.Itoa(sessions), "-m", strconv.Itoa(n-bad),
		"-f", p.from, "-t", e2eRcpt, "-M", "client.test", "-l", strconv.Itoa(size), p.pf.Addr).CombinedOutput()
	wg.Wait()
	took := time.Since(start)
	if err != nil {
		tb.Fatalf("%s: smtp-source: %v\n%s", p.name, err, out)
	}
	if wormErr != nil {
		tb.Fatalf("%s: sending the worm: %v", p.name, wormErr)
	}
	if refused != bad {
		tb.Fatalf("%s: %d of %d worm messages were refused", p.name, refused, bad)
	}
	return e2eResult{msgs: n, refused: refused, took: took, cpu: mwCPU(tb, p) - cpu0}
}

// sendWorms sends msg n times over sessions parallel SMTP sessions, one
// message per connection as smtp-source does, and counts the messages
// refused at end of data. Any other failure is an error.
func sendWorms(addr, from string, msg []byte, n, sessions int) (int, error) {
	var mu sync.Mutex
	refused, next := 0, 0
	var firstErr error
	var wg sync.WaitGroup
	for range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next == n || firstErr != nil {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				err := sendOne(addr, from, msg)
				mu.Lock()
				var perr *textproto.Error
				switch {
				case errors.As(err, &perr) && perr.Code == 554:
					refused++
				case err != nil:
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return refused, firstErr
}

// sendOne sends msg in one SMTP session and returns the refusal, if any.
func sendOne(addr, from string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(e2eRcpt); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func mwCPU(tb testing.TB, p *e2ePath) float64 {
	if p.mw == nil {
		return 0
	}
	s, err := harness.CPUSeconds(p.mw.PID())
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// greylistWarmUp sends the inbound triplet once, which greylisting defers, and
// again after the delay, which passes it.
func greylistWarmUp(tb testing.TB, p *e2ePath) {
	tb.Helper()
	source, _ := harness.Program("smtp-source")
	send := func() string {
		out, _ := exec.Command(source, "-m", "1", "-f", p.from, "-t", e2eRcpt, "-M", "client.test", p.pf.Addr).CombinedOutput()
		return string(out)
	}
	send()
	time.Sleep(e2eDelay + 200*time.Millisecond)
	if out := send(); strings.Contains(out, "451") || strings.Contains(out, "rror") {
		tb.Fatalf("%s: the greylisting warm-up did not pass: %s", p.name, out)
	}
}

// waitRelayed waits until Postfix has relayed at least n messages to the
// sink.
func waitRelayed(tb testing.TB, p *e2ePath, n int) {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := strings.Count(p.pf.Log(), "status=sent")
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: Postfix relayed %d messages to the sink, want %d", p.name, got, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// wormMessage is one worm mail: a short text
// and the same attachment every time (EICAR, base64, as a worm's zip).
func wormMessage() string {
	eicar := base64.StdEncoding.EncodeToString([]byte(harness.EICAR))
	return "From: <" + e2eInFrom + ">\n" +
		"To: <" + e2eRcpt + ">\n" +
		"Subject: Your document\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\n" +
		"\n" +
		"--b1\n" +
		"Content-Type: text/plain\n" +
		"\n" +
		"Please see the attached file.\n" +
		"--b1\n" +
		"Content-Type: application/octet-stream; name=\"document.com\"\n" +
		"Content-Transfer-Encoding: base64\n" +
		"Content-Disposition: attachment; filename=\"document.com\"\n" +
		"\n" +
		eicar + "\n" +
		"--b1--\n"
}

// buildBenchTool builds bench/cmd/NAME into a temporary directory.
func buildBenchTool(tb testing.TB, name string) string {
	tb.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(tb.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, "./bench/cmd/"+name)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building %s: %v\n%s", name, err, b)
	}
	return out
}

func envInt(tb testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

func readFileT(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
