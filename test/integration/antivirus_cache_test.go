package integration_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestAntivirusCache is issue 16 behind Postfix with a real clamd: once
// clamd has found a worm attachment, the same attachment in another
// message is refused from the scan cache with the same virus name even
// while clamd is down, and a message clamd has not seen is tempfailed,
// never accepted unscanned.
//
// The test clamd has only a local .ndb, so it reports no signature
// version: clean verdicts are not cached (there would be no version
// change to drop them on) while infected ones are, which is the path an
// outbreak takes.
func TestAntivirusCache(t *testing.T) {
	t.Parallel()
	const client, from = "127.0.68.5", "worm@ext.test"
	clamd := harness.StartClamd(t) // its own: this test stops it
	s := startStack(t, viaMilter, avYAML("127.0.68.128/25", servers(clamd.TCPServer()),
		"connect_timeout: 1s", "on_error: tempfail",
		"cache: {enabled: true, max_entries: 1000, ttl: 1h, clean_min_size: 65536}"))
	waitClamdStatus(t, s.mw, clamd.TCPServer(), true)
	eicar := harness.EICARFile(t)

	// clamd finds it: a miss, and the attachment is learnt.
	id := harness.UniqueID(t)
	first := s.requireVirusRefused(t, s.sendFile(t, client, from, id, eicar), id)
	if !strings.Contains(first, harness.EICARSignature) {
		t.Fatalf("reply %q does not name the virus %s", first, harness.EICARSignature)
	}
	if d := antivirusDecision(t, s.mw, client, "reject"); strings.Contains(d["reason"], "cache") {
		t.Errorf("the first infected message was decided by the cache: %v", d)
	}
	requireMetric(t, s.mw, "mailwarden_antivirus_cache_misses_total", 1)
	requireMetric(t, s.mw, "mailwarden_antivirus_cache_entries", 1)

	if err := clamd.Stop(); err != nil {
		t.Fatal(err)
	}
	waitClamdStatus(t, s.mw, clamd.TCPServer(), false)

	// Another message (its own ID, boundary and text) with the same
	// attachment: refused from the cache with the same name.
	id = harness.UniqueID(t)
	res := harness.SendAttached(t, harness.Mail{Server: s.pf.Addr, Client: client, From: "other@ext.test", To: rcptTo, ID: id,
		Headers: []string{"Subject: a different message"}}, eicar)
	if again := s.requireVirusRefused(t, res, id); again != first {
		t.Errorf("with clamd down the worm was refused with %q, want %q as before", again, first)
	}
	d := mwDecision(t, s.mw, func(r harness.Record) bool {
		return r["client"] == client && r["check"] == "antivirus" && r["action"] == "reject" && strings.Contains(r["reason"], "scan cache")
	})
	t.Logf("cached decision: %v", d)
	requireMetric(t, s.mw, `mailwarden_antivirus_cache_hits_total{result="infected"}`, 1)

	// An attachment the cache has never seen cannot be scanned.
	id = harness.UniqueID(t)
	res = s.sendFile(t, client, from, id, harness.RandomFile(t, "new.bin", 100<<10))
	res.RequireDataReply(t, scanUnavailable)
	s.neverArrived(t, id)
	requireMetric(t, s.mw, "mailwarden_antivirus_cache_misses_total", 2)
	if v := scrapeMetrics(t, s.mw)[`mailwarden_antivirus_cache_hits_total{result="clean"}`]; v != "0" {
		t.Errorf("clean cache hits = %q, want 0", v)
	}
}

// mwDecision waits for a mail log decision matching match.
func mwDecision(t *testing.T, mw *harness.Mailwarden, match func(harness.Record) bool) harness.Record {
	t.Helper()
	return mw.WaitDecision(t, match, 10*time.Second)
}

// requireMetric waits until the daemon's /metrics shows series at want.
func requireMetric(t *testing.T, mw *harness.Mailwarden, series string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := scrapeMetrics(t, mw)[series]
		if n, err := strconv.Atoi(got); err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metric %s = %q, want %d", series, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
