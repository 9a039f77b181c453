package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/redis/redistest"
	"mailwarden/internal/store/storetest"
)

// prefixes hands each store of a test run its own prefix on a shared
// server, so the subtests start empty without a FLUSHDB between them.
var prefixes atomic.Int64

func freshPrefix() string { return fmt.Sprintf("mwtest%d:", prefixes.Add(1)) }

func open(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := redistest.Server(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, Options{URL: srv.URL(), Prefix: freshPrefix()})
	})
}

func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	addrs := redistest.Cluster(t, 3)
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, Options{Addrs: addrs, Prefix: freshPrefix()})
	})
}

func TestImport(t *testing.T) {
	srv := redistest.Server(t)
	storetest.RunImport(t, func(t *testing.T) store.Store {
		return open(t, Options{URL: srv.URL(), Prefix: freshPrefix()})
	})
}

// TestTwoHandles runs the suite's two-handle check with two stores on
// one server and prefix, as the daemon and the CLI use them.
func TestTwoHandles(t *testing.T) {
	srv := redistest.Server(t)
	prefixOf := map[string]string{}
	opener := func(t *testing.T, dir string) store.Store {
		p, ok := prefixOf[dir]
		if !ok {
			p = freshPrefix()
			prefixOf[dir] = p
		}
		return open(t, Options{URL: srv.URL(), Prefix: p})
	}
	storetest.RunTwoHandles(t, opener, opener)
}

func TestPrefixesApart(t *testing.T) {
	srv := redistest.Server(t)
	ctx := context.Background()
	a := open(t, Options{URL: srv.URL(), Prefix: "site-a:"})
	b := open(t, Options{URL: srv.URL(), Prefix: "site-b:"})
	now := time.Now()
	tr := store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "b@example.net",
		FirstSeen: now, LastSeen: now, Attempts: 1, Expires: now.Add(time.Hour)}
	if err := a.PutTriplet(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "virus"}, now); err != nil {
		t.Fatal(err)
	}
	if err := a.SetFreeze(ctx, store.Freeze{Scope: store.FreezeAll, Since: now, By: "root"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetTriplet(ctx, tr.Client, tr.Sender, tr.Recipient, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("triplet of prefix a seen through prefix b: %v", err)
	}
	if _, err := b.ActiveLatch(ctx, store.LatchClient, "10.1.2.3", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("latch of prefix a seen through prefix b: %v", err)
	}
	if fs, err := b.ListFreezes(ctx); err != nil || len(fs) != 0 {
		t.Errorf("freezes through prefix b = %v, %v; want none", fs, err)
	}
	if ts, err := b.ListTriplets(ctx, store.TripletFilter{}, now); err != nil || len(ts) != 0 {
		t.Errorf("ListTriplets through prefix b = %v, %v; want none", ts, err)
	}
	if a.ID() == b.ID() {
		t.Errorf("two prefixes share the identity %d", a.ID())
	}
	if err := CheckPrefix("a{b}:"); err == nil {
		t.Error("CheckPrefix accepted a prefix with a hash tag")
	}
}

// TestDataLossGuard: a FLUSHALL while the store is open makes Ping,
// Probe and every read of latches and freezes fail, until the identity
// is back.
func TestDataLossGuard(t *testing.T) {
	srv := redistest.Server(t)
	ctx := context.Background()
	s := open(t, Options{URL: srv.URL(), Prefix: freshPrefix()})
	now := time.Now()
	if _, err := s.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "virus"}, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("Probe before the flush: %v", err)
	}
	id, err := srv.Command("GET", s.k.id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Command("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	for name, fn := range map[string]func() error{
		"Ping":  func() error { return s.Ping(ctx) },
		"Probe": func() error { return s.Probe(ctx) },
	} {
		err := fn()
		if !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "identity key") {
			t.Errorf("%s after FLUSHALL: err = %v, want ErrLost naming the identity key", name, err)
		}
	}
	if _, err := s.ActiveLatch(ctx, store.LatchClient, "10.1.2.3", now); !errors.Is(err, ErrLost) {
		t.Errorf("ActiveLatch after FLUSHALL: err = %v, want ErrLost (not NotFound: the latch must not be let through)", err)
	}
	if _, err := s.ListFreezes(ctx); !errors.Is(err, ErrLost) {
		t.Errorf("ListFreezes after FLUSHALL: err = %v, want ErrLost", err)
	}
	// The identity comes back (an operator restored the data).
	if _, err := srv.Command("SET", s.k.id, id); err != nil {
		t.Fatal(err)
	}
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("Probe with the identity back: %v", err)
	}
	if _, err := s.ListFreezes(ctx); err != nil {
		t.Errorf("ListFreezes with the identity back: %v", err)
	}
}

// TestFlushSeenWithoutProbe: the latch and freeze reads find a flush
// themselves, in the same round trip, so a latched client is not let
// through in the seconds before the health monitor's next probe.
func TestFlushSeenWithoutProbe(t *testing.T) {
	srv := redistest.Server(t)
	ctx := context.Background()
	s := open(t, Options{URL: srv.URL(), Prefix: freshPrefix()})
	now := time.Now()
	if _, err := s.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "virus"}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Command("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ActiveLatch(ctx, store.LatchClient, "10.1.2.3", now); !errors.Is(err, ErrLost) {
		t.Errorf("ActiveLatch right after FLUSHALL, no probe between: err = %v, want ErrLost", err)
	}
	if _, err := s.ActiveLatch(ctx, store.LatchClient, "10.9.9.9", now); !errors.Is(err, ErrLost) {
		t.Errorf("ActiveLatch of an unlatched client after FLUSHALL: err = %v, want ErrLost", err)
	}
	if _, err := s.ListFreezes(ctx); !errors.Is(err, ErrLost) {
		t.Errorf("ListFreezes right after FLUSHALL: err = %v, want ErrLost", err)
	}
}

// TestWriteFailuresCounted: writes that fail while Redis is down are
// counted by kind, as the daemon's health monitor reads them; answers
// such as "not active" are not failures.
func TestWriteFailuresCounted(t *testing.T) {
	srv := redistest.Server(t)
	ctx := context.Background()
	s := open(t, Options{URL: srv.URL(), Prefix: freshPrefix(), Timeout: 500 * time.Millisecond, DialTimeout: 500 * time.Millisecond})
	now := time.Now()
	if _, err := s.ClearLatch(ctx, "NOSUCHID", "admin", "", now); err == nil {
		t.Fatal("ClearLatch of an unknown latch succeeded")
	}
	if got := s.WriteFailures(); got["latch"] != 0 {
		t.Errorf("an unknown latch counted as a failed write: %v", got)
	}
	srv.Stop()
	tr := store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "b@example.net",
		FirstSeen: now, LastSeen: now, Attempts: 1, Expires: now.Add(time.Hour)}
	if err := s.PutTriplet(ctx, tr); err == nil {
		t.Fatal("PutTriplet with Redis stopped succeeded")
	}
	if err := s.AppendEvents(ctx, store.Event{Time: now, Kind: store.EventReject, Expires: now.Add(time.Hour)}); err == nil {
		t.Fatal("AppendEvents with Redis stopped succeeded")
	}
	got := s.WriteFailures()
	if got["triplet"] != 1 || got["event"] != 1 {
		t.Errorf("write failures with Redis stopped = %v, want triplet=1 event=1", got)
	}
}

// TestRestartKeepsData: with appendonly, a restarted Redis has the data
// and the same identity, and the open store carries on without a reopen.
func TestRestartKeepsData(t *testing.T) {
	srv := redistest.Server(t)
	ctx := context.Background()
	s := open(t, Options{URL: srv.URL(), Prefix: freshPrefix(), Timeout: time.Second, DialTimeout: time.Second})
	now := time.Now()
	l, err := s.AddLatch(ctx, store.Latch{Kind: store.LatchUser, Key: "alice", Rule: "rate_user"}, now)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	for name, fn := range map[string]func() error{
		"Ping":  func() error { return s.Ping(ctx) },
		"Probe": func() error { return s.Probe(ctx) },
		"ActiveLatch": func() error {
			_, err := s.ActiveLatch(ctx, store.LatchUser, "alice", now)
			return err
		},
	} {
		if err := fn(); err == nil {
			t.Errorf("%s with Redis down succeeded", name)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("calls with Redis down took %v, want a quick error", d)
	}
	srv.Start()
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("Probe after the restart: %v", err)
	}
	got, err := s.ActiveLatch(ctx, store.LatchUser, "alice", now)
	if err != nil || got.ID != l.ID {
		t.Fatalf("ActiveLatch after the restart = %+v, %v; want latch %s", got, err, l.ID)
	}
}

// TestRestartWithoutPersistence: a Redis that restarts empty is noticed.
func TestRestartWithoutPersistence(t *testing.T) {
	srv := redistest.Server(t, redistest.NoPersistence())
	ctx := context.Background()
	s := open(t, Options{URL: srv.URL(), Prefix: freshPrefix()})
	srv.Stop()
	srv.Start()
	if err := s.Probe(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("Probe after an empty restart: err = %v, want ErrLost", err)
	}
	if _, err := s.ListLatches(ctx, store.LatchFilter{}, time.Now()); !errors.Is(err, ErrLost) {
		t.Errorf("ListLatches after an empty restart: err = %v, want ErrLost", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"bad scheme", Options{URL: "http://127.0.0.1:1"}, "url"},
		{"neither", Options{}, "either a URL or addresses"},
		{"both", Options{URL: "redis://127.0.0.1:1", Addrs: []string{"127.0.0.1:1"}}, "either a URL or addresses"},
		{"unreachable", Options{Addrs: []string{"127.0.0.1:1"}, DialTimeout: time.Second}, "127.0.0.1:1"},
		{"brace prefix", Options{URL: "redis://127.0.0.1:1", Prefix: "x{y}"}, "hash tag"},
		{"missing CA", Options{URL: "rediss://127.0.0.1:1", TLS: TLS{Enabled: true, CAFile: "/nonexistent/ca.pem"}}, "ca_file"},
	} {
		start := time.Now()
		s, err := Open(ctx, tc.o)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: Open took %v", tc.name, d)
		}
	}
}

func TestTripletEncoding(t *testing.T) {
	base := time.UnixMilli(time.Now().UnixMilli())
	for _, tr := range []store.Triplet{
		{FirstSeen: base, LastSeen: base.Add(time.Minute), Attempts: 1, Expires: base.Add(48 * time.Hour)},
		{FirstSeen: base, LastSeen: base, PassedAt: base.Add(5 * time.Minute), Attempts: 300, Expires: base.Add(35 * 24 * time.Hour)},
		{FirstSeen: base.Add(time.Hour), LastSeen: base, Expires: base},
	} {
		var got store.Triplet
		b := encodeTriplet(tr)
		if err := decodeTriplet(b, &got); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !got.FirstSeen.Equal(tr.FirstSeen) || !got.LastSeen.Equal(tr.LastSeen) || !got.PassedAt.Equal(tr.PassedAt) ||
			!got.Expires.Equal(tr.Expires) || got.Attempts != tr.Attempts {
			t.Errorf("round trip of %+v = %+v", tr, got)
		}
		if len(b) > 20 {
			t.Errorf("encoded triplet is %d bytes, want at most 20", len(b))
		}
	}
	for _, c := range [][3]string{{"a", "b:c", "d"}, {"", "", ""}, {"1:2", "3", "4:5"}} {
		got := [3]string{}
		var ok bool
		got[0], got[1], got[2], ok = parseTripletField(tripletField(c[0], c[1], c[2]))
		if !ok || got != c {
			t.Errorf("field of %q parsed back as %q, %v", c, got, ok)
		}
	}
	// Hosts sharing a Redis must agree on every triplet's bucket, so the
	// hash may never change: FNV-1a 64 with MurmurHash3's fmix64.
	f := tripletField("192.0.2.0/24", "a@example.org", "b@example.net")
	if h := hash64(f); h != 15361753416520298352 || h%Buckets != 126832 {
		t.Errorf("hash64(%q) = %d, bucket %d; want 15361753416520298352, bucket 126832", f, h, h%Buckets)
	}
	k := newKeys("p:")
	for key, want := range map[string]bool{"1}": false, "p:t:{0}": true, "p:t:{131071}": true, "p:t:{}": false, "p:t:{-1}": false,
		"p:t:12:192.0.2.0/2413:a@example.orgb@example.net": false, "p:t:{1}x": false} {
		if k.isBucket(key) != want {
			t.Errorf("isBucket(%q) = %v", key, !want)
		}
	}
}

// TestAuditedPutTripletUndone: the triplet and its audit event live in
// different slots, so PutTriplet stores the triplet first; when the
// event cannot be stored, the previous triplet is put back.
func TestAuditedPutTripletUndone(t *testing.T) {
	srv := redistest.Server(t)
	ctx := context.Background()
	s := open(t, Options{URL: srv.URL(), Prefix: freshPrefix()})
	now := time.UnixMilli(time.Now().UnixMilli())
	old := store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "b@example.net",
		FirstSeen: now, LastSeen: now, Attempts: 1, Expires: now.Add(time.Hour)}
	if err := s.PutTriplet(ctx, old); err != nil {
		t.Fatal(err)
	}
	// The event log's hash made a string: storing an event fails.
	if _, err := srv.Command("SET", s.k.ev, "not a hash"); err != nil {
		t.Fatal(err)
	}
	passed := old
	passed.PassedAt, passed.Expires = now, now.Add(35*24*time.Hour)
	a := &store.Audit{Event: store.Event{Time: now, Kind: store.EventAdmin, Reason: "allow", Expires: now.Add(time.Hour)}}
	if err := s.PutTriplet(store.WithAudit(ctx, a), passed); err == nil {
		t.Fatal("audited PutTriplet succeeded without its event")
	}
	if a.Stored() {
		t.Error("audit marked stored")
	}
	got, err := s.GetTriplet(ctx, old.Client, old.Sender, old.Recipient, now)
	if err != nil || got.Passed() || !got.Expires.Equal(old.Expires) {
		t.Errorf("triplet after the undone put = %+v, %v; want the previous one back", got, err)
	}
	fresh := old
	fresh.Recipient = "c@example.net"
	if err := s.PutTriplet(store.WithAudit(ctx, &store.Audit{Event: a.Event}), fresh); err == nil {
		t.Fatal("audited PutTriplet of a new triplet succeeded without its event")
	}
	if _, err := s.GetTriplet(ctx, fresh.Client, fresh.Sender, fresh.Recipient, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("new triplet after the undone put: err = %v, want it gone", err)
	}
}

// TestTLSAndACL reaches a TLS-only server as an ACL user, by URL and by
// address, and is refused with the wrong password or an unknown CA.
func TestTLSAndACL(t *testing.T) {
	certs := redistest.Certs(t)
	srv := redistest.Server(t, redistest.WithTLS(certs),
		redistest.Args("--user", "mailwarden", "on", ">s3cret", "~mwtls:*", "&*", "+@all"))
	ctx := context.Background()
	tlsOpts := TLS{Enabled: true, CAFile: certs.CA}
	for name, o := range map[string]Options{
		"url":       {URL: "rediss://mailwarden:s3cret@" + srv.Addr(), TLS: TLS{Enabled: true, CAFile: certs.CA}, Prefix: "mwtls:"},
		"addresses": {Addrs: []string{srv.Addr()}, Username: "mailwarden", Password: "s3cret", TLS: tlsOpts, Prefix: "mwtls:"},
	} {
		s, err := Open(ctx, o)
		if err != nil {
			t.Errorf("%s: Open: %v", name, err)
			continue
		}
		if err := s.Probe(ctx); err != nil {
			t.Errorf("%s: Probe: %v", name, err)
		}
		s.Close()
	}
	for name, o := range map[string]Options{
		"wrong password":         {Addrs: []string{srv.Addr()}, Username: "mailwarden", Password: "nope", TLS: tlsOpts, Prefix: "mwtls:"},
		"outside the ACL's keys": {Addrs: []string{srv.Addr()}, Username: "mailwarden", Password: "s3cret", TLS: tlsOpts},
		"unknown CA":             {Addrs: []string{srv.Addr()}, Username: "mailwarden", Password: "s3cret", TLS: TLS{Enabled: true}, Prefix: "mwtls:"},
		"no TLS":                 {Addrs: []string{srv.Addr()}, Username: "mailwarden", Password: "s3cret", Prefix: "mwtls:", DialTimeout: time.Second, Timeout: time.Second},
	} {
		if s, err := Open(ctx, o); err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestSentinel finds the master through a Sentinel.
func TestSentinel(t *testing.T) {
	master := redistest.Server(t)
	sentinel := redistest.Sentinel(t, master, "mw")
	ctx := context.Background()
	s := open(t, Options{Addrs: []string{sentinel.Addr()}, MasterName: "mw", Prefix: freshPrefix()})
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("Probe through a Sentinel: %v", err)
	}
	direct := open(t, Options{URL: master.URL(), Prefix: s.k.prefix})
	if direct.ID() != s.ID() {
		t.Errorf("identity through the Sentinel %d, on the master %d", s.ID(), direct.ID())
	}
}

// TestClientLogInDaemonFormat: go-redis's own messages reach the
// store's logger rather than stderr.
func TestClientLogInDaemonFormat(t *testing.T) {
	var b strings.Builder
	l := clientLog{slog.New(slog.NewTextHandler(&b, nil))}
	l.Printf(context.Background(), "redis: %s:%d: connection pool: %s\n", "127.0.0.1", 6379, "failed to dial")
	if got := b.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, `msg="redis client: redis: 127.0.0.1:6379: connection pool: failed to dial"`) {
		t.Errorf("logged %q", got)
	}
}

// What a bucket holds is read back by listings and store copy: any field
// or value, however it got there, is parsed without a panic, and every
// triplet's field parses back to its keys.
func FuzzTripletField(f *testing.F) {
	f.Add("192.0.2.0/24", "a@example.org", "b@example.net", []byte("12:192.0.2.0/24"))
	f.Add("", "", "", []byte{0, 0, 0, 0, 0, 1, 0xff})
	f.Fuzz(func(t *testing.T, client, sender, recipient string, raw []byte) {
		c, s, r, ok := parseTripletField(tripletField(client, sender, recipient))
		if !ok || c != client || s != sender || r != recipient {
			t.Fatalf("field of %q %q %q parsed back as %q %q %q, %v", client, sender, recipient, c, s, r, ok)
		}
		parseTripletField(string(raw))
		var tr store.Triplet
		_ = decodeTriplet(raw, &tr)
	})
}
