package storetest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storecopy"
)

// RunImport checks a backend's store.Importer the way `mailwarden store
// copy` uses it: it fills an in-memory source with every kind of record,
// copies it with storecopy.Copy into a fresh store from open, and checks
// that every record arrived as it was (IDs, counts, times to the
// millisecond), that expired ones did not, and that latches, events and
// alerts made after the copy get IDs that collide with none copied. open
// must return a fresh, empty store; RunImport closes it.
func RunImport(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	ctx := context.Background()
	base := baseTime()
	now := base.Add(time.Minute) // the copy's now; what expired before it stays behind
	src := memory.New()
	defer src.Close()
	fillSource(t, src, base)

	dst := open(t)
	defer func() {
		if err := dst.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if _, ok := dst.(store.Importer); !ok {
		t.Fatalf("%T does not implement store.Importer", dst)
	}
	counts, err := storecopy.Copy(ctx, src, dst, now, nil)
	if err != nil {
		t.Fatalf("Copy: %v\ncounts: %+v", err, counts)
	}
	want := map[string]int{
		storecopy.Freezes: 2, storecopy.Latches: 4, storecopy.Users: 2, storecopy.Triplets: 2,
		storecopy.ClientPasses: 2, storecopy.TrapRecords: 2, storecopy.Ports: 2, storecopy.Logins: 2,
		storecopy.HostNotes: 2, storecopy.Disinfections: 1, storecopy.Alerts: 3, storecopy.Events: 5,
	}
	for _, c := range counts {
		if !c.OK() || c.Copied != want[c.Kind] {
			t.Errorf("%s: copied %d (want %d), source %d, target %d", c.Kind, c.Copied, want[c.Kind], c.Source, c.Target)
		}
	}

	same(t, "ListFreezes", func(s store.Store) ([]store.Freeze, error) { return s.ListFreezes(ctx) }, src, dst)
	same(t, "ListLatches", func(s store.Store) ([]store.Latch, error) {
		return s.ListLatches(ctx, store.LatchFilter{}, now)
	}, src, dst)
	same(t, "ListLatches active", func(s store.Store) ([]store.Latch, error) {
		return s.ListLatches(ctx, store.LatchFilter{Active: true}, now)
	}, src, dst)
	same(t, "ListUsers", func(s store.Store) ([]store.User, error) { return s.ListUsers(ctx) }, src, dst)
	same(t, "ListTriplets", func(s store.Store) ([]store.Triplet, error) {
		return s.ListTriplets(ctx, store.TripletFilter{}, now)
	}, src, dst)
	same(t, "ListClientPasses", func(s store.Store) ([]store.ClientPass, error) {
		return s.ListClientPasses(ctx, now, 0, 0)
	}, src, dst)
	same(t, "TrapRecords", func(s store.Store) ([]store.TrapRecord, error) { return s.TrapRecords(ctx, "") }, src, dst)
	same(t, "AllPorts", func(s store.Store) ([]store.PortState, error) { return s.(store.Importer).AllPorts(ctx) }, src, dst)
	same(t, "OpenPorts", func(s store.Store) ([]store.PortState, error) { return s.OpenPorts(ctx, "") }, src, dst)
	same(t, "LastLogins", func(s store.Store) ([]store.MailLogin, error) { return s.LastLogins(ctx) }, src, dst)
	same(t, "HostNotes", func(s store.Store) ([]store.HostNote, error) { return s.HostNotes(ctx, "") }, src, dst)
	same(t, "Disinfections", func(s store.Store) ([]store.Disinfection, error) { return s.Disinfections(ctx, "") }, src, dst)
	same(t, "QueryEvents", func(s store.Store) ([]store.Event, error) {
		return s.QueryEvents(ctx, store.EventFilter{})
	}, src, dst)
	same(t, "PendingAlerts", func(s store.Store) ([]store.Alert, error) {
		as, err := s.PendingAlerts(ctx, 0)
		return slices.DeleteFunc(as, func(a store.Alert) bool { return !now.Before(a.Expires) }), err
	}, src, dst)
	same(t, "RecentAlerts", func(s store.Store) ([]store.Alert, error) {
		as, err := s.RecentAlerts(ctx, 0)
		return slices.DeleteFunc(as, func(a store.Alert) bool { return !now.Before(a.Expires) }), err
	}, src, dst)
	if c, err := dst.AlertCursor(ctx); err != nil || c != 7 {
		t.Errorf("AlertCursor = %d, %v; want 7", c, err)
	}
	if n, err := dst.ClientPasses(ctx, "198.51.100.0/24", now); err != nil || n != 3 {
		t.Errorf("ClientPasses = %d, %v; want 3", n, err)
	}
	if l, err := dst.ActiveLatch(ctx, store.LatchClient, "10.0.0.5", now); err != nil || l.Count != 3 || l.Refused != 1 {
		t.Errorf("ActiveLatch after the copy = %+v, %v; want the copied latch, count 3, refused 1", l, err)
	}
	checkNewIDs(t, src, dst, now)
}

// fillSource stores in s one or more records of every kind Copy copies,
// and some that expired before base+1m and must stay behind.
func fillSource(t *testing.T, s *memory.Store, base time.Time) {
	t.Helper()
	ctx := context.Background()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("filling the source: %s: %v", what, err)
		}
	}
	pending := triplet("192.0.2.0/24", "a@example.org", "b@example.net", base)
	passed := triplet("198.51.100.0/24", "", "c@example.net", base)
	passed.PassedAt, passed.Attempts, passed.LastSeen = base.Add(5*time.Minute), 3, base.Add(5*time.Minute)
	gone := triplet("203.0.113.0/24", "x@example.org", "y@example.net", base)
	gone.Expires = base.Add(30 * time.Second)
	for _, tr := range []store.Triplet{pending, passed, gone} {
		must("PutTriplet", s.PutTriplet(ctx, tr))
	}
	for range 3 {
		_, err := s.AddClientPass(ctx, "198.51.100.0/24", base, base.Add(36*24*time.Hour))
		must("AddClientPass", err)
	}
	_, err := s.AddClientPass(ctx, "192.0.2.0/24", base, base.Add(time.Hour))
	must("AddClientPass", err)
	_, err = s.AddClientPass(ctx, "203.0.113.0/24", base, base.Add(30*time.Second))
	must("AddClientPass", err)

	active := store.Latch{Kind: store.LatchClient, Key: "10.0.0.5", Rule: "sender_domain", Reason: "sender domain not allowed",
		Site: "lincoln", Evidence: "x@evil.example"}
	_, err = s.AddLatch(ctx, active, base)
	must("AddLatch", err)
	l, err := s.AddLatch(ctx, active, base.Add(time.Second))
	must("AddLatch again", err)
	_, err = s.AddLatchRefusal(ctx, l.ID, base.Add(2*time.Second))
	must("AddLatchRefusal", err)
	cleared, err := s.AddLatch(ctx, store.Latch{Kind: store.LatchUser, Key: "bob", Rule: "rate_user", Reason: "too fast"}, base)
	must("AddLatch user", err)
	audit := &store.Audit{Event: store.Event{Time: base.Add(3 * time.Second), Kind: store.EventAdmin, Check: "latch clear",
		Action: "command line", User: "root", Reason: "cleared " + cleared.ID}}
	_, err = s.ClearLatch(store.WithAudit(ctx, audit), cleared.ID, "root", "reimaged", base.Add(3*time.Second))
	must("ClearLatch", err)
	_, err = s.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.0.0.6", Rule: "virus", Expires: base.Add(2 * time.Hour)}, base)
	must("AddLatch expiring", err)
	_, err = s.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.0.0.7", Rule: "virus", Expires: base.Add(30 * time.Second)}, base)
	must("AddLatch expired", err)

	must("SetFreeze", s.SetFreeze(ctx, store.Freeze{Scope: store.FreezeAll, Since: base, By: "root", Note: "incident"}))
	must("SetFreeze", s.SetFreeze(ctx, store.Freeze{Scope: store.FreezeDomain, Value: "example.org", Since: base, By: "ann"}))

	must("AppendEvents", s.AppendEvents(ctx,
		store.Event{Time: base, Kind: store.EventReject, Check: "sender", Action: "reject", Client: "10.0.0.5", Site: "lincoln",
			User: "bob", Sender: "x@evil.example", Recipients: []string{"a@example.net", "b@example.net"}, QueueID: "4Xyz",
			Reason: "not allowed", Expires: base.Add(90 * 24 * time.Hour)},
		store.Event{Time: base.Add(time.Second), Kind: store.EventLatch, Check: "latch", Action: "tempfail", Client: "10.0.0.5"},
		// Past retention by the real clock: QueryEvents leaves it out,
		// and so does the copy.
		store.Event{Time: base.Add(-48 * time.Hour), Kind: store.EventGreylist, Expires: time.Now().Add(-time.Hour)},
		store.Event{Time: base.Add(2 * time.Second), Kind: store.EventAdmin, Check: "freeze on", Action: "dashboard", User: "ann",
			Reason: "freeze all"},
		store.Event{Time: base.Add(2 * time.Second), Kind: store.EventVirus, Check: "antivirus", Action: "reject", Client: "10.0.0.6"},
	))

	ids, err := s.AddAlerts(ctx, []store.Alert{
		// Expired at the copy's now, so left behind; the first, so the
		// last copied alert has the highest id.
		{Created: base, Kind: "test", Severity: "info", Receiver: "chat", Subject: "old", Expires: base.Add(30 * time.Second)},
		{Created: base, Kind: "latch", Severity: "critical", Receiver: "ops", Subject: "latched", Text: "10.0.0.5",
			Items: []string{"one", "two"}, Expires: base.Add(7 * 24 * time.Hour)},
		{Created: base, Kind: "virus", Severity: "warning", Receiver: "ops", Digest: true, Subject: "digest",
			Expires: base.Add(7 * 24 * time.Hour)},
		{Created: base, Kind: "queue", Severity: "info", Receiver: "chat", Subject: "queue", Expires: base.Add(7 * 24 * time.Hour)},
	}, 7)
	must("AddAlerts", err)
	must("MarkAlert", s.MarkAlert(ctx, store.AlertUpdate{ID: ids[1], State: store.AlertSent, Attempts: 1, SentAt: base.Add(time.Second)}))
	must("MarkAlert", s.MarkAlert(ctx, store.AlertUpdate{ID: ids[2], State: store.AlertFailed, Attempts: 5, Error: "502 bad gateway"}))
	must("MarkAlert", s.MarkAlert(ctx, store.AlertUpdate{ID: ids[3], State: store.AlertPending, Attempts: 2,
		NextTry: base.Add(time.Minute), Error: "timeout"}))

	must("AddTrapHits", s.AddTrapHits(ctx,
		store.TrapRecord{Client: "10.0.0.5", FirstSeen: base, LastSeen: base.Add(time.Second), Count: 4, LastDst: "192.0.2.25:25",
			LastHelo: "pc5", LastMailFrom: "x@evil.example"},
		store.TrapRecord{Client: "10.0.0.5", FirstSeen: base.Add(time.Minute), LastSeen: base.Add(2 * time.Minute), Count: 2},
		store.TrapRecord{Client: "10.0.0.9", LastSeen: base, Count: 1, LastHelo: "pc9"}))
	must("RecordPort", s.RecordPort(ctx, store.PortFinding{Client: "10.0.0.5", Port: 4444, Open: true, Time: base}))
	must("RecordPort", s.RecordPort(ctx, store.PortFinding{Client: "10.0.0.8", Port: 1080, Open: true, Time: base}))
	must("RecordPort", s.RecordPort(ctx, store.PortFinding{Client: "10.0.0.8", Port: 1080, Open: false, Time: base.Add(time.Hour)}))
	must("RecordLogin", s.RecordLogin(ctx, store.MailLogin{Client: "10.0.0.5", User: "bob", Service: "imap", Time: base}))
	must("RecordLogin", s.RecordLogin(ctx, store.MailLogin{Client: "10.0.0.9", User: "eve", Service: "pop3", Time: base}))
	must("AddHostNote", s.AddHostNote(ctx, store.HostNote{Client: "10.0.0.5", By: "ann", Text: "reported", Time: base}))
	must("AddHostNote", s.AddHostNote(ctx, store.HostNote{Client: "10.0.0.5", By: "root", Text: "reimaged", Time: base.Add(time.Hour)}))
	must("AddDisinfection", s.AddDisinfection(ctx, store.Disinfection{Client: "10.0.0.5", By: "root", Note: "clean", Time: base.Add(time.Hour)}))
	must("AddUser", s.AddUser(ctx, store.User{Name: "ann", Role: store.RoleAdmin, Hash: []byte("$2a$10$ann"), Created: base,
		Changed: base.Add(time.Hour)}))
	must("AddUser", s.AddUser(ctx, store.User{Name: "bob", Role: store.RoleViewer, Hash: []byte("$2a$10$bob"), Created: base}))
}

// checkNewIDs checks that a latch, events and alerts made in dst after
// the copy get IDs none of src's records has.
func checkNewIDs(t *testing.T, src, dst store.Store, now time.Time) {
	t.Helper()
	ctx := context.Background()
	old, err := src.ListLatches(ctx, store.LatchFilter{}, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		l, err := dst.AddLatch(ctx, store.Latch{Kind: store.LatchUser, Key: fmt.Sprintf("new%d", i), Rule: "rate_user"}, now)
		if err != nil {
			t.Fatalf("AddLatch after the copy: %v", err)
		}
		if slices.ContainsFunc(old, func(o store.Latch) bool { return o.ID == l.ID }) {
			t.Errorf("AddLatch after the copy gave id %s, a copied latch's", l.ID)
		}
	}

	evs, err := src.QueryEvents(ctx, store.EventFilter{Tail: true})
	if err != nil || len(evs) == 0 {
		t.Fatalf("source events: %v, %v", evs, err)
	}
	last := evs[len(evs)-1].ID
	if err := dst.AppendEvents(ctx, store.Event{Time: now, Kind: store.EventAdmin, Check: "store copy"}); err != nil {
		t.Fatal(err)
	}
	got, err := dst.QueryEvents(ctx, store.EventFilter{Tail: true, AfterID: last})
	if err != nil || len(got) != 1 || got[0].Check != "store copy" {
		t.Errorf("events after id %d once one more is appended = %+v, %v; want the new one alone", last, got, err)
	}

	as, err := src.RecentAlerts(ctx, 0)
	if err != nil || len(as) == 0 {
		t.Fatalf("source alerts: %v, %v", as, err)
	}
	ids, err := dst.AddAlerts(ctx, []store.Alert{{Created: now, Kind: "test", Expires: now.Add(time.Hour)}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] <= as[0].ID {
		t.Errorf("AddAlerts after the copy gave id %d, not above the copied %d", ids[0], as[0].ID)
	}
}

// same checks that list returns equal records from want and got.
func same[T any](t *testing.T, what string, list func(store.Store) ([]T, error), want, got store.Store) {
	t.Helper()
	w, err := list(want)
	if err != nil {
		t.Fatalf("%s of the source: %v", what, err)
	}
	g, err := list(got)
	if err != nil {
		t.Fatalf("%s of the copy: %v", what, err)
	}
	if !equal(reflect.ValueOf(w), reflect.ValueOf(g)) {
		t.Errorf("%s differs after the copy:\nsource %+v\ncopy   %+v", what, w, g)
	}
}

var timeType = reflect.TypeFor[time.Time]()

// equal is reflect.DeepEqual with times compared by instant (a backend
// gives them back in its own location) and empty slices equal to nil.
func equal(a, b reflect.Value) bool {
	switch {
	case a.Type() != b.Type():
		return false
	case a.Type() == timeType:
		return a.Interface().(time.Time).Equal(b.Interface().(time.Time))
	}
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equal(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range a.NumField() {
			if !equal(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}
