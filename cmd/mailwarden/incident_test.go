package main

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/clamd"
	"mailwarden/internal/events"
	"mailwarden/internal/hosts"
	"mailwarden/internal/mtaqueue"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

var update = flag.Bool("update", false, "rewrite the golden files from the output")

// openAlerts stands in for the alerts subsystem.
type openAlerts []adminapi.IncidentAlert

func (a openAlerts) OpenAlerts(context.Context, time.Time) ([]adminapi.IncidentAlert, []string, error) {
	return a, []string{"mailwarden alerts list"}, nil
}

// incidentDaemon serves the admin API over a store holding a bad day:
// a freeze, two latches on two sites, trap hits, a rate trip, outbound
// events, a queue of spam, new mailboxes and a stale clamd.
func incidentDaemon(t *testing.T, alerts adminapi.AlertSource) string {
	t.Helper()
	data := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.OpenWith(data, log, sqlite.Options{Mirror: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	now := time.Now()
	lincoln, _ := sites.New(nil, []sites.Site{
		{Name: "lincoln", Networks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		{Name: "roosevelt", Networks: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}},
	})
	reg, err := hosts.New(hosts.Options{Store: st, Sites: func() *sites.Registry { return lincoln }, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range []store.Latch{
		{Kind: store.LatchClient, Key: "10.1.4.23", Rule: "sender_domain", Site: "lincoln", Reason: "envelope sender domain evil.example not allowed"},
		{Kind: store.LatchUser, Key: "office@victim.example", Rule: "rate_user", Reason: "over 100 messages an hour"},
	} {
		if _, err := st.AddLatch(ctx, l, now.Add(-time.Duration(10+i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetFreeze(ctx, store.Freeze{Scope: store.FreezeAll, Since: now.Add(-5 * time.Minute), By: "root", Note: "spam run"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddTrapHits(ctx, store.TrapRecord{Client: "10.2.0.9", FirstSeen: now.Add(-20 * time.Minute),
		LastSeen: now.Add(-2 * time.Minute), Count: 40, LastHelo: "pc9"}); err != nil {
		t.Fatal(err)
	}
	el := events.NewLog(events.LogOptions{Store: st})
	var evs []store.Event
	for range 3 {
		evs = append(evs, store.Event{Time: now.Add(-3 * time.Minute), Kind: store.EventFreeze, Check: "freeze", Action: "tempfail",
			Client: "10.3.0.5", User: "office@victim.example", Sender: "office@victim.example"})
	}
	evs = append(evs,
		store.Event{Time: now.Add(-4 * time.Minute), Kind: store.EventRateTrip, Check: "ratelimit", Action: "tempfail",
			Client: "10.3.0.5", User: "office@victim.example", Sender: "office@victim.example"},
		store.Event{Time: now.Add(-6 * time.Minute), Kind: store.EventReject, Check: "sender", Action: "reject",
			Client: "10.1.4.23", Site: "lincoln", Sender: "boss@evil.example"},
		store.Event{Time: now.Add(-7 * time.Hour), Kind: store.EventReject, Check: "sender", Action: "reject",
			Client: "10.9.9.9", Sender: "old@evil.example"},
		store.Event{Time: now.Add(-30 * time.Minute), Kind: store.EventMailbox, Check: "mailbox watch",
			Reason: "25 new mailboxes within 10m: servises@a.example, ofice@b.example ..."})
	if err := el.Record(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	q := (&adminapitest.Queue{}).Add(now, "office@victim.example", "x@gmail.test", 120).Add(now, "a'b;rm -rf@evil.example", "y@gmail.test", 2)
	servers := []clamd.ServerStatus{{Addr: "tcp:127.0.0.1:3310", Up: true, Checked: now.Add(-4 * time.Second),
		Version: clamd.Version{Engine: "ClamAV 1.0.7", DBVersion: 27463, DBTime: now.Add(-100 * time.Hour)}}}
	serveAdmin(t, data, adminapi.Options{Backend: st, Hosts: reg, Events: el,
		Queue: adminapi.QueueOptions{Watch: mtaqueue.NewWatcher(mtaqueue.WatchOptions{Open: q.Open}), Open: q.Open},
		Antivirus: func() adminapi.AntivirusState {
			return adminapi.AntivirusState{Enabled: true, SignatureMaxAge: 72 * time.Hour, Servers: servers}
		},
		Store: func() adminapi.StoreStatus {
			return adminapi.StoreStatus{Backend: "redis", Up: true, Since: now.Add(-time.Hour), Checked: now.Add(-time.Second),
				Warnings: []string{"maxmemory-policy allkeys-lru with maxmemory 1073741824: a full server may evict latches and freezes, letting their mail through; set maxmemory-policy noeviction (docs/redis.md)"}}
		},
		Mailboxes: func(context.Context, time.Time) adminapi.MailboxNews {
			return adminapi.MailboxNews{Available: true, Snapshot: "/var/lib/mailwarden/mailbox-snapshot", HasSnapshot: true,
				Taken: now.Add(-24 * time.Hour), Mailboxes: 950, NewCount: 2, New: []string{"servises@a.example", "ofice@b.example"}}
		},
		Alerts: alerts,
	})
	return data
}

// volatile masks what changes from run to run: times, durations, latch
// IDs and ports.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?`), "TIME"},
	{regexp.MustCompile(`\b(\d+[dhms])+( ago)?\b`), "DUR"},
	{regexp.MustCompile(`(\d):\d{2,5}\b`), "$1:PORT"},
	// Columns are as wide as their widest value, masked or not.
	{regexp.MustCompile(`  +`), "  "},
}

// mask replaces the volatile fields of s, and the latches' IDs in ids.
func mask(s string, ids []string) string {
	for _, id := range ids {
		s = strings.ReplaceAll(s, id, "LATCHID")
	}
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.with)
	}
	return s
}

// latchIDs are the IDs of every latch the daemon in data holds.
func latchIDs(t *testing.T, data string) []string {
	t.Helper()
	code, out, stderr := runCmd("latch", "list", "--all", "--json", "--data", data)
	var ls []adminapi.Latch
	if err := json.Unmarshal([]byte(out), &ls); code != 0 || err != nil {
		t.Fatalf("latch list: exit %d, %v: %s", code, err, stderr)
	}
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.ID)
	}
	return ids
}

// TestIncidentGolden: `mailwarden incident` prints every section with
// the command that acts on it, the same every time once times, IDs and
// ports are masked. go test -run IncidentGolden -update rewrites it.
func TestIncidentGolden(t *testing.T) {
	for _, c := range []struct {
		golden string
		alerts adminapi.AlertSource
	}{
		{"incident.golden", nil},
		{"incident-alerts.golden", openAlerts{{ID: "A1", Time: time.Now().Add(-time.Minute), Kind: "rate_trip",
			Summary: "office@victim.example tripped the user rate limit", Count: 4}}},
	} {
		data := incidentDaemon(t, c.alerts)
		code, out, stderr := runCmd("incident", "--data", data)
		if code != 0 {
			t.Fatalf("incident: exit %d: %s", code, stderr)
		}
		got := mask(out, latchIDs(t, data))
		path := filepath.Join("testdata", c.golden)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("%s differs (go test -run IncidentGolden -update rewrites it); got:\n%s", c.golden, got)
		}
	}
}

// TestIncidentJSON: --json has every section, the commands with them.
func TestIncidentJSON(t *testing.T) {
	data := incidentDaemon(t, nil)
	code, out, stderr := runCmd("incident", "--data", data, "--json")
	var in adminapi.Incident
	if err := json.Unmarshal([]byte(out), &in); code != 0 || err != nil {
		t.Fatalf("incident --json: exit %d, %v: %s", code, err, stderr)
	}
	if len(in.Freezes.Freezes) != 1 || len(in.Latches.Latches) != 2 || in.Hosts.Total != 4 ||
		!in.Queue.Available || in.Queue.Summary.Messages != 122 || in.RateTrips.Trips != 1 || in.Mailboxes.NewCount != 2 ||
		in.Alerts.Configured || !strings.HasPrefix(in.Alerts.Note, "alerts are not configured") || in.Store == nil || !in.Antivirus.Enabled {
		t.Errorf("incident --json: %+v", in)
	}
	if got := in.Queue.Actions; len(got) < 2 || got[1] != "mailwarden queue purge --sender office@victim.example" {
		t.Errorf("queue actions %q", got)
	}
	if !strings.HasPrefix(in.Freezes.Actions[0], "mailwarden freeze off --all --note") {
		t.Errorf("freeze actions %q", in.Freezes.Actions)
	}
}
