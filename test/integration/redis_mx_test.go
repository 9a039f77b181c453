package integration_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/store/redis/redistest"
	"mailwarden/test/harness"
)

// Issue 17: several MX hosts share one state through Redis. Each test
// starts its own redis-server (redistest.Server, a free loopback port)
// and one or two daemons, each with its own data directory and its own
// private Postfix, as two MX hosts of one organisation would be set up.

// redisMXYAML is the config both MX hosts share: a site whose clients
// may send only as school.test or college.test (so a forgery latches),
// a greylist delay short enough to wait out, a per-client rate limit of
// rateLimit messages an hour, and the store in Redis at addr.
func redisMXYAML(addr, network string, extra ...string) string {
	return fmt.Sprintf(`store:
  kind: redis
  url: "redis://%s/0"
  prefix: "mx-test"
internal_networks: [%q]
greylist:
  delay: %s
sites:
  - name: %s
    networks: [%q]
    contact: %q
    sender_domains: [school.test, college.test]
    header_from_domains: [school.test, college.test]
rate_limits:
  client: {messages: %d, per: 1h}
%s`, addr, network, greylistDelay, siteName, network, siteContact, rateLimit, strings.Join(extra, "\n"))
}

// rateLimit is the per-client limit of redisMXYAML: small, and even, so
// that half of it plus one through each host is over it only together.
const rateLimit = 4

// twoMX starts two MX hosts sharing srv.
func twoMX(t *testing.T, srv *redistest.Instance, network string) (*stack, *stack) {
	t.Helper()
	yaml := redisMXYAML(srv.Addr(), network)
	return startStack(t, viaMilter, yaml), startStack(t, viaMilter, yaml)
}

// TestRedisTwoMX: what one MX host learns, the other acts on. A
// greylisted triplet first seen on host 1 passes on host 2 after the
// delay; a latch made on host 1 refuses the client on host 2; a rate
// limit counts mail through both; a freeze set through host 1's CLI
// holds mail on host 2 within a second.
func TestRedisTwoMX(t *testing.T) {
	t.Parallel()
	const (
		network = "127.0.141.0/24"
		forger  = "127.0.141.5"
		sender  = "127.0.141.6"
		frozen  = "127.0.141.7"
		outside = "127.0.142.5"
	)
	srv := redistest.Server(t)
	h1, h2 := twoMX(t, srv, network)

	t.Run("greylist", func(t *testing.T) {
		const from = "news@ext.test"
		h1.requireGreylisted(t, h1.send(t, outside, from, rcptTo, harness.UniqueID(t)), "milter", outside)
		seen := time.Now()
		time.Sleep(time.Until(seen.Add(greylistDelay + 500*time.Millisecond)))
		id := harness.UniqueID(t)
		h2.send(t, outside, from, rcptTo, id).RequireDelivered(t)
		h2.sink.WaitForID(t, id, 10*time.Second)
		d := h2.mw.WaitDecision(t, func(r harness.Record) bool {
			return r["client"] == outside && strings.HasPrefix(r["reason"], "greylist: passed")
		}, 5*time.Second)
		t.Logf("host 2 let through host 1's triplet: %v", d)
	})

	t.Run("latch", func(t *testing.T) {
		requireRefused(t, h1.send(t, forger, "worm@evil.test", rcptTo, harness.UniqueID(t)), "550 5.7.1 ",
			"Sender domain evil.test is not allowed from "+forger)
		ref := field(waitLatch(t, h1.mw, forger), "id")
		id := harness.UniqueID(t)
		requireRefused(t, h2.send(t, forger, "teacher@school.test", rcptTo, id), "550 5.7.1 ",
			"Mail from "+forger+" is blocked: ", "ref "+ref)
		h2.neverArrived(t, id)
		if got := field(waitLatch(t, h2.mw, forger), "id"); got != ref {
			t.Errorf("host 2 lists latch %q for %s, want host 1's %q", got, forger, ref)
		}
	})

	t.Run("rate limit", func(t *testing.T) {
		// Alternate hosts: each sees rateLimit/2+1 messages, under the
		// limit alone, so only a shared count refuses the last two.
		var accepted, refused int
		var order []string
		for i := range rateLimit + 2 {
			h := []*stack{h1, h2}[i%2]
			id := harness.UniqueID(t)
			res := h.send(t, sender, "staff@school.test", rcptTo, id)
			switch r := res.Reply("RCPT TO") + res.Reply("MAIL FROM"); {
			case i < rateLimit:
				res.RequireDelivered(t)
				h.sink.WaitForID(t, id, 10*time.Second)
				accepted++
				order = append(order, fmt.Sprintf("host %d: accepted", i%2+1))
			case strings.Contains(r, "451 4.7.1 ") && strings.Contains(r, "Too much mail from"):
				h.neverArrived(t, id)
				refused++
				order = append(order, fmt.Sprintf("host %d: refused", i%2+1))
			default:
				t.Errorf("message %d of %d (limit %d, through host %d) got MAIL %q RCPT %q, want 451 4.7.1 Too much mail",
					i+1, rateLimit+2, rateLimit, i%2+1, res.Reply("MAIL FROM"), res.Reply("RCPT TO"))
			}
		}
		t.Logf("rate limit %d across two hosts: %s", rateLimit, strings.Join(order, ", "))
	})

	t.Run("freeze", func(t *testing.T) {
		cliOK(t, h1.mw, "freeze", "on", "--domain", "college.test", "--note", "issue 17")
		set := time.Now()
		t.Cleanup(func() { h1.mw.CLI(t, "freeze", "off", "--domain", "college.test") })
		time.Sleep(time.Until(set.Add(time.Second)))
		id := harness.UniqueID(t)
		requireRefused(t, h2.send(t, frozen, "staff@college.test", rcptTo, id), "451 4.7.0 ",
			"Outbound mail is frozen by the administrator")
		h2.neverArrived(t, id)
		if fs := freezes(t, h2); len(fs) != 1 || !mentions(fs[0], "college.test") {
			t.Errorf("host 2's freeze status --json = %v, want host 1's freeze of college.test", fs)
		}
		// The other domain still flows through host 2.
		h2.deliver(t, frozen, "staff@school.test")
	})
}

// outcome counts what a stream of messages met.
type outcome struct {
	mu               sync.Mutex
	accepted, greyed int
	other            []string
}

// TestRedisOutage stops the Redis server under one MX host while mail
// flows through its Postfix. The daemon stays up and says it is not
// ready, naming the store; greylisting fails open (the default with
// Redis), so new inbound senders are accepted; a latched client and
// frozen mail are tempfailed, never accepted. Once Redis is back the
// daemon recovers by itself: ready again, the latch refusing as before,
// the outage and the recovery in the event log and in `status`.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	const (
		network = "127.0.143.0/24"
		latched = "127.0.143.5"
		frozen  = "127.0.143.7"
		outside = "127.0.144."
	)
	srv := redistest.Server(t)
	h := startStack(t, viaMilter, redisMXYAML(srv.Addr(), network))

	requireRefused(t, h.send(t, latched, "worm@evil.test", rcptTo, harness.UniqueID(t)), "550 5.7.1 ")
	ref := field(waitLatch(t, h.mw, latched), "id")
	cliOK(t, h.mw, "freeze", "on", "--domain", "college.test")
	requireRefused(t, h.send(t, frozen, "staff@college.test", rcptTo, harness.UniqueID(t)), "451 4.7.0 ")
	h.requireGreylisted(t, h.send(t, outside+"1", "before@ext.test", rcptTo, harness.UniqueID(t)), "milter", outside+"1")

	// Inbound mail from new senders flows the whole time, through the
	// stop and the start.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var during outcome
	var down sync.WaitGroup
	down.Add(1)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			res := h.send(t, fmt.Sprintf("%s%d", outside, 10+i%200), fmt.Sprintf("flow%d@ext.test", i), rcptTo, harness.UniqueID(t))
			during.mu.Lock()
			switch r := res.Reply("RCPT TO"); {
			case strings.HasPrefix(r, "250 "):
				during.accepted++
			case strings.HasPrefix(r, "451 4.7.1 "):
				during.greyed++
			default:
				during.other = append(during.other, r)
			}
			during.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	time.Sleep(time.Second)
	srv.Stop()
	stopped := time.Now()
	notReady, body := waitReadyCode(t, h.mw, http.StatusServiceUnavailable, 15*time.Second)
	if b := strings.ToLower(body); !strings.Contains(b, "store") && !strings.Contains(b, "redis") {
		t.Errorf("/-/ready while Redis is down: %q, want it to name the store", body)
	}
	if !h.mw.Running() {
		t.Fatalf("the daemon exited when Redis stopped")
	}

	// Greylisting fails open: new inbound senders are accepted.
	var openIDs []string
	for i := range 3 {
		id := harness.UniqueID(t)
		client := fmt.Sprintf("%s%d", outside, 230+i)
		h.send(t, client, fmt.Sprintf("open%d@ext.test", i), rcptTo, id).RequireDelivered(t)
		openIDs = append(openIDs, id)
	}
	for _, id := range openIDs {
		h.sink.WaitForID(t, id, 10*time.Second)
	}
	// The latch and the freeze fail closed: tempfail, never accepted.
	var closedIDs []string
	for range 3 {
		id := harness.UniqueID(t)
		requireRefused(t, h.send(t, latched, "teacher@school.test", rcptTo, id), "4")
		closedIDs = append(closedIDs, id)
		id = harness.UniqueID(t)
		requireRefused(t, h.send(t, frozen, "staff@college.test", rcptTo, id), "451 ")
		closedIDs = append(closedIDs, id)
	}
	st := storeStatus(t, h.mw)
	if st.Up {
		t.Errorf("status --json while Redis is down: store %+v, want down", st)
	}
	downStatus := h.mw.CLIWords(t, 1, "status")
	if downStatus.ExitCode != 0 || !strings.Contains(downStatus.Stdout, "UNKNOWN") {
		t.Errorf("status while Redis is down (exit %d) does not say the freezes and latches are unknown:\n%s%s",
			downStatus.ExitCode, downStatus.Stdout, downStatus.Stderr)
	}

	// Down for longer than two of the store monitor's probes (every
	// 5s): an outage shorter than one may fall between them and leave
	// no store event.
	time.Sleep(time.Until(stopped.Add(12 * time.Second)))
	srv.Start()
	started := time.Now()
	readyAgain, _ := waitReadyCode(t, h.mw, http.StatusOK, 30*time.Second)
	close(stop)
	wg.Wait()

	// /-/ready turns 200 on the store monitor's first good probe; the
	// Redis client's pool may still answer its last dial error for up
	// to a second after that (it retries dialling once a second), so
	// the latch may tempfail a little longer before it refuses again.
	// Either way the mail is not accepted.
	var latchBack time.Time
	for deadline := time.Now().Add(10 * time.Second); ; {
		id := harness.UniqueID(t)
		res := h.send(t, latched, "teacher@school.test", rcptTo, id)
		closedIDs = append(closedIDs, id)
		if r := res.Reply("MAIL FROM"); strings.HasPrefix(r, "550 5.7.1 ") {
			requireRefused(t, res, "550 5.7.1 ", "ref "+ref)
			latchBack = time.Now()
			break
		} else if !strings.HasPrefix(r, "451 ") || time.Now().After(deadline) {
			t.Fatalf("latched client after Redis came back got MAIL %q RCPT %q, want 550 5.7.1 (451 for a moment)",
				r, res.Reply("RCPT TO"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := storeStatus(t, h.mw); !st.Up {
		t.Errorf("status --json after Redis came back: store %+v, want up", st)
	}
	if out := h.mw.CLIWords(t, 1, "status").Stdout; strings.Contains(out, "CANNOT") || strings.Contains(out, "DOWN") {
		t.Errorf("status after Redis came back still reports the store down:\n%s", out)
	}
	evs := waitEvents(t, h.mw, 2, 10*time.Second, "--kind", "store")
	// Nothing a fail-closed check stopped reached the sink, now that
	// the queue had time to deliver whatever was accepted.
	time.Sleep(2 * time.Second)
	for _, id := range closedIDs {
		h.neverArrived(t, id)
	}
	if !h.mw.Running() {
		t.Fatalf("the daemon is not running after the outage")
	}
	during.mu.Lock()
	defer during.mu.Unlock()
	if len(during.other) > 0 {
		t.Errorf("inbound mail during the outage got unexpected replies: %q", during.other)
	}
	t.Logf("Redis stopped: /-/ready 503 after %v; Redis started: ready after %v, latch refusing (550) after %v (outage %v)",
		notReady.Sub(stopped).Round(time.Millisecond), readyAgain.Sub(started).Round(time.Millisecond),
		latchBack.Sub(started).Round(time.Millisecond), started.Sub(stopped).Round(time.Millisecond))
	t.Logf("inbound flow through the outage: %d accepted, %d greylisted", during.accepted, during.greyed)
	t.Logf("store events: %v", evs)
	t.Logf("mailwarden status while Redis was down:\n%s", downStatus.Stdout)
}

// waitEvents waits until `events FLAGS --json` lists at least n events.
func waitEvents(t *testing.T, mw *harness.Mailwarden, n int, timeout time.Duration, flags ...string) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs := events(t, mw, flags...)
		if len(evs) >= n || time.Now().After(deadline) {
			if len(evs) < n {
				t.Errorf("events %v lists %d events after %v, want at least %d: %v", flags, len(evs), timeout, n, evs)
			}
			return evs
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRedisFlushAll: Redis losing its data under a running daemon
// (FLUSHALL, or a server restarted without its files) must not free a
// latched client: its mail is tempfailed, not accepted, from the first
// message after the flush (the latch lookup reads the store's identity
// in the same round trip), and the store monitor then shows the store
// down (/-/ready 503).
func TestRedisFlushAll(t *testing.T) {
	t.Parallel()
	const (
		network = "127.0.145.0/24"
		latched = "127.0.145.5"
	)
	srv := redistest.Server(t)
	h := startStack(t, viaMilter, redisMXYAML(srv.Addr(), network))
	requireRefused(t, h.send(t, latched, "worm@evil.test", rcptTo, harness.UniqueID(t)), "550 5.7.1 ")
	waitLatch(t, h.mw, latched)

	if _, err := srv.Command("FLUSHALL"); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	flushed := time.Now()
	first := harness.UniqueID(t)
	res := h.send(t, latched, "teacher@school.test", rcptTo, first)
	r := res.Reply("MAIL FROM") + " " + res.Reply("RCPT TO")
	t.Logf("latched client %v after FLUSHALL: MAIL/RCPT %q", time.Since(flushed).Round(time.Millisecond), r)
	if !strings.Contains(r, "451 ") {
		t.Errorf("latched client right after FLUSHALL got MAIL/RCPT %q, want a tempfail (451)", r)
	}
	h.neverArrived(t, first)

	noticed, body := waitReadyCode(t, h.mw, http.StatusServiceUnavailable, 15*time.Second)
	t.Logf("/-/ready 503 %v after FLUSHALL: %s", noticed.Sub(flushed).Round(time.Millisecond), strings.TrimSpace(body))
	for range 3 {
		id := harness.UniqueID(t)
		res := h.send(t, latched, "teacher@school.test", rcptTo, id)
		r := res.Reply("MAIL FROM") + " " + res.Reply("RCPT TO")
		if !strings.Contains(r, "451 ") && !strings.Contains(r, "550 ") {
			t.Errorf("latched client after FLUSHALL, once noticed, got MAIL/RCPT %q, want a refusal (451)", r)
		}
		h.neverArrived(t, id)
	}
	if !h.mw.Running() {
		t.Fatalf("the daemon exited after FLUSHALL")
	}
}
